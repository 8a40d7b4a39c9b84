-- why: a dead letter was keyed by (consumer, message id) and the upsert kept the first body, so two
-- different bodies under one id left one row (the second body lost); a message without a readable
-- id was keyed by its body hash alone, so equal bodies under different keys merged (the second key
-- lost). The key is now (consumer, message id or NULL, message key or NULL, body digest): every
-- distinct message keeps its row, and only a true repeat (same id, key and body) counts up times_seen.

-- Generated: always the digest of the body, for existing rows and for every writer.
ALTER TABLE dead_letters ADD COLUMN body_sha256 bytea NOT NULL GENERATED ALWAYS AS (sha256(body)) STORED;

-- 'sha256:<hex>' stood for "no readable id": that is NULL now, the digest has its own column.
ALTER TABLE dead_letters ALTER COLUMN message_id DROP NOT NULL;
UPDATE dead_letters SET message_id = NULL WHERE message_id LIKE 'sha256:%';

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_consumer_message_id_key;
-- coalesce: a NULL id must still collide with itself (NULLS NOT DISTINCT needs Postgres 15).
CREATE UNIQUE INDEX dead_letters_key ON dead_letters (consumer, (coalesce(message_id, '')), (coalesce(msg_key, '')), body_sha256);
CREATE INDEX dead_letters_message_id ON dead_letters (message_id);
