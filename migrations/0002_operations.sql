-- why: operators replay, cancel, redrive and discard; every such action is recorded (who, when, what, why, outcome), and a repeated request id is recognised instead of acted on twice.

CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  action      text NOT NULL CHECK (action IN ('replay', 'cancel', 'redrive', 'discard')),
  target_type text NOT NULL CHECK (target_type IN ('saga', 'dead_letter')),
  target_id   text NOT NULL,
  reason      text,
  request_id  text,
  outcome     text NOT NULL CHECK (outcome IN ('accepted', 'refused', 'dry-run', 'duplicate')),
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, at);
CREATE INDEX audit_log_at ON audit_log (at);
-- one accepted action per request id and target: a retried HTTP call does not replay twice
CREATE UNIQUE INDEX audit_log_request ON audit_log (action, target_id, request_id)
  WHERE request_id IS NOT NULL AND outcome = 'accepted';
