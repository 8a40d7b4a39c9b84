-- why: the hot tables churn (every saga row is rewritten per step, outbox rows are inserted and deleted per message, inbox rows are pruned); vacuum them far more eagerly than the server default so they stay small and their indexes stay short. Applies only where autovacuum runs (it should).

ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_limit = 2000);
ALTER TABLE sagas SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000);
ALTER TABLE inbox SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE saga_steps SET (autovacuum_vacuum_insert_scale_factor = 0.05);
