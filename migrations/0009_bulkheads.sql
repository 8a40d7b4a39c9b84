-- why: a concurrency limit (bulkhead) per gate shared by every orchestrator process: K slot rows per gate, each naming the saga and command that holds it. A slot is taken in the transaction that writes the command and freed in the one that applies its reply, so a kill -9 rolls both back with the saga; a slot whose saga has moved on without freeing it (cancel, deadline, replay) is recognised from the saga's state and reclaimed.

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
