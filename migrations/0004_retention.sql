-- why: `sagaflow prune` deletes finished sagas oldest first; without this index each batch would
-- scan the sagas table. Partial: running sagas (no finished_at) are never candidates.
CREATE INDEX sagas_finished_at ON sagas (finished_at) WHERE finished_at IS NOT NULL;
