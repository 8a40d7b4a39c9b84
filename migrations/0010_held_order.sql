-- why: the sagas waiting at a gate are served compensations first, then in the order they began to wait. The index holds that order whole (gate, compensation first, wake time, id), so handing a freed slot to the longest waiter reads the front of the queue and stops: with 100,000 starts held at one bulkhead, the old (gate, wake_at) index made every hand-off sort all of them (1.7 s per statement). CREATE INDEX blocks writes to sagas while it builds; on a large sagas table apply this migration in a quiet window.
DROP INDEX sagas_held;
CREATE INDEX sagas_held ON sagas ((state->'cursor'->'held'->>'gate'), (state->'cursor'->>'phase' <> 'compensation'), wake_at, id)
  WHERE state->'cursor'->>'waiting' = 'held';

-- gate_slots is a few hundred rows rewritten on every command sent and every reply: vacuum it on a fixed count of dead rows, not a share of its size, so the slot lookups stay on short pages.
ALTER TABLE gate_slots SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 2000, autovacuum_analyze_scale_factor = 0.0, autovacuum_analyze_threshold = 2000);
