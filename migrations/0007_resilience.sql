-- why: outages pause sagas instead of compensating them: one circuit breaker row per gate (a participant or a command type) that every orchestrator process reads and updates; saga deadlines on the database clock; held sagas found by gate when a breaker closes; operators open and close breakers by hand, audited.

CREATE TABLE circuits (
  name           text PRIMARY KEY,
  state          text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
  -- an operator's hand: 'open' keeps it open until closed by hand; NULL = automatic
  forced         text CHECK (forced IN ('open')),
  -- sliding window counter: the current window and the previous one, weighted by overlap
  window_start   timestamptz NOT NULL DEFAULT now(),
  failures       integer NOT NULL DEFAULT 0,
  calls          integer NOT NULL DEFAULT 0,
  prev_failures  integer NOT NULL DEFAULT 0,
  prev_calls     integer NOT NULL DEFAULT 0,
  opened_at      timestamptz,
  -- end of the cool-down: the first attempt after it is the one probe (half-open)
  retry_at       timestamptz,
  probe_saga     uuid,
  -- a probe not answered by then lets another one go
  probe_until    timestamptz,
  opens          integer NOT NULL DEFAULT 0,
  probes         integer NOT NULL DEFAULT 0,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE sagas ADD COLUMN deadline_at timestamptz;

-- the sagas waiting at a gate, released at a controlled rate when its breaker closes
CREATE INDEX sagas_held ON sagas ((state->'cursor'->'held'->>'gate'), wake_at)
  WHERE state->'cursor'->>'waiting' = 'held';

ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
  CHECK (action IN ('replay', 'cancel', 'redrive', 'discard', 'circuit-open', 'circuit-close'));
ALTER TABLE audit_log DROP CONSTRAINT audit_log_target_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_target_type_check CHECK (target_type IN ('saga', 'dead_letter', 'circuit'));
