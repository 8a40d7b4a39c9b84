/**
 * The queue order of the sagas held at a gate (a bulkhead's waiters, a breaker's held sagas):
 * compensations first, since they undo work and free what the participant holds (behind a backlog of
 * new starts they would wait for all of them), then in the order the sagas began to wait. It matches
 * the `sagas_held` index column for column (migration 0010), so taking the first few of a long queue
 * reads only the front of it. Written for a FROM list holding the sagas table alone (bare names).
 */
export const HELD_ORDER = `(state->'cursor'->>'phase' <> 'compensation'), wake_at, id`;

/**
 * "Saga `alias` waits at gate `gate`" (a SQL expression for the gate: `$1`, a column): the
 * `sagas_held` index's predicate and first column, written once so every query that walks a gate's
 * queue stays one the index answers.
 */
export function heldAt(alias: string, gate: string): string {
  return `${alias}.state->'cursor'->>'waiting' = 'held' AND ${alias}.state->'cursor'->'held'->>'gate' = ${gate}`;
}
