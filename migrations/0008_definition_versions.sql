-- why: sagas run to their end on the definition version they started with; a worker without that version parks the saga's inputs instead of driving it with the wrong definition, operators migrate sagas between versions (audited), and every applied input is kept so a saga's history can be exported and replayed against a changed definition.

-- the saga's own reason while a "waiting for definition" marker stands in for it (restored when a worker with the version picks the saga up)
ALTER TABLE sagas ADD COLUMN reason_before_wait text;

-- replies (and other inputs) that reached a worker without the saga's definition version: acked and kept here, in arrival order, until a worker that has the version applies them
CREATE TABLE saga_pending_inputs (
  seq        bigserial PRIMARY KEY,
  saga_id    uuid NOT NULL,
  message_id uuid NOT NULL,
  consumer   text NOT NULL,
  topic      text NOT NULL,
  -- the input as the engine takes it, and the delivery as received (dead-lettered from here if the input is rejected later)
  input      jsonb NOT NULL,
  headers    jsonb NOT NULL,
  body       bytea NOT NULL,
  parked_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (saga_id, message_id)
);

-- every input that changed a saga (start, reply, timer, local result, operator action), keyed by the saga version it produced, with a summary of the path it took: what `sagaflow history export` writes
CREATE TABLE saga_inputs (
  saga_id            uuid NOT NULL,
  version            integer NOT NULL,
  definition_version integer NOT NULL,
  input              jsonb NOT NULL,
  result             jsonb NOT NULL,
  at                 timestamptz NOT NULL DEFAULT now(),
  -- no foreign key, as saga_steps: the writer holds the saga row lock
  PRIMARY KEY (saga_id, version)
);

ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('replay', 'cancel', 'redrive', 'discard', 'circuit-open', 'circuit-close', 'migrate'));
