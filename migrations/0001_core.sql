-- why: the core tables: sagas and one row per step attempt, the inbox that makes redelivery harmless, the outbox that publishes what a transaction decided, and the dead letters kept for operators.
-- Runs with search_path set to the configured schema (default "sagaflow"); names stay unqualified.

CREATE TABLE sagas (
  id                 uuid PRIMARY KEY,
  tenant_id          text NOT NULL,
  saga_type          text NOT NULL,
  definition_version integer NOT NULL,
  status             text NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'compensated', 'failed')),
  data               jsonb NOT NULL,
  -- engine bookkeeping: steps done, data kept for compensations, the attempt in flight
  state              jsonb NOT NULL,
  reason             text,
  -- optimistic fence on top of the row lock: every save checks the version it read
  version            integer NOT NULL,
  -- the one timer a saga can have (step timeout or retry back-off), in database time
  wake_at            timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  finished_at        timestamptz
) WITH (fillfactor = 85);

CREATE INDEX sagas_wake_at ON sagas (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX sagas_status_created ON sagas (status, created_at);

CREATE TABLE saga_steps (
  saga_id      uuid NOT NULL,
  seq          integer NOT NULL,
  step_name    text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('forward', 'compensation', 'local')),
  attempt      integer NOT NULL,
  status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
  command_id   uuid,
  command_type text,
  reply_id     uuid,
  reply_type   text,
  kept         jsonb,
  error        text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  -- no foreign key to sagas on purpose: the writer already holds the saga row lock, and the
  -- extra parent lookup per insert costs throughput for no added safety
  PRIMARY KEY (saga_id, seq)
);

CREATE TABLE inbox (
  consumer    text NOT NULL,
  message_id  uuid NOT NULL,
  -- first 16 bytes of sha256(body): the same id with another body is an ID_CONFLICT, not a duplicate
  digest      bytea NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_received_at ON inbox USING brin (received_at);

CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  message_id    uuid NOT NULL,
  topic         text NOT NULL,
  msg_key       text NOT NULL,
  msg_type      text NOT NULL,
  headers       jsonb,
  -- the exact bytes to publish: a re-publish is byte-identical, so consumers' inboxes see a duplicate
  body          bytea NOT NULL,
  -- the relay leaves a row alone until then; rows the writer publishes itself get a grace period
  publish_after timestamptz NOT NULL DEFAULT now(),
  attempts      integer NOT NULL DEFAULT 0,
  last_error    text,
  parked_at     timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (publish_after, id) WHERE parked_at IS NULL;

CREATE TABLE dead_letters (
  id              bigserial PRIMARY KEY,
  -- the envelope id, or 'sha256:<hex>' of the body when the message had no readable id
  message_id      text NOT NULL,
  consumer        text NOT NULL,
  topic           text NOT NULL,
  msg_type        text,
  msg_key         text,
  reason_code     text NOT NULL,
  error           text,
  headers         jsonb NOT NULL,
  body            bytea NOT NULL,
  attempts        integer,
  times_seen      integer NOT NULL DEFAULT 1,
  status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'redriven', 'discarded')),
  first_seen_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at    timestamptz NOT NULL DEFAULT now(),
  resolved_at     timestamptz,
  resolved_by     text,
  resolution_note text,
  UNIQUE (consumer, message_id)
);
CREATE INDEX dead_letters_status ON dead_letters (status, last_seen_at);
