-- why: limits shared by every orchestrator process. Bulkheads: K slot rows per gate, each naming the saga and command that holds it; a slot is taken in the transaction that writes the command and freed in the one that applies its reply, so a kill -9 rolls both back with the saga, and a slot whose saga moved on without freeing it (cancel, deadline, replay) is recognised from the saga's state and reclaimed. Rate limits: token buckets per gate (and tenant).

CREATE TABLE gate_slots (
  gate        text NOT NULL,
  slot        integer NOT NULL,
  -- NULL: free. With command_id NULL: handed to a saga waiting at the gate, which takes it when it wakes.
  saga_id     uuid,
  command_id  uuid,
  taken_at    timestamptz,
  PRIMARY KEY (gate, slot)
);

-- a saga's slots (freeing on reply, "does this waiting saga already have one?")
CREATE INDEX gate_slots_saga ON gate_slots (saga_id) WHERE saga_id IS NOT NULL;

-- rate limits: one token bucket per gate (tenant '') and, optionally, per gate and tenant. Processes take tokens in small leases by a single-statement update, never inside a saga transaction, so the row is locked for one statement only.
CREATE TABLE rate_buckets (
  gate         text NOT NULL,
  tenant       text NOT NULL DEFAULT '',
  tokens       float8 NOT NULL,
  refilled_at  timestamptz NOT NULL,
  taken        bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (gate, tenant)
);
