/**
 * Consumer-group timing: how soon a crashed member is noticed, and how long a rebalance may wait.
 * No kafkajs import here, so the configuration can check these values without loading the client.
 *
 * Why these defaults (bench/kafka-recovery.ts measures them; kafkajs 2.2.4 has neither static
 * membership nor cooperative rebalancing, so every rebalance stops EVERY member of the group):
 *
 * - sessionTimeoutMs 6,000: after a kill -9 nothing happens until the dead member's session
 *   expires; then its partitions move. A replacement that joins meanwhile starts a rebalance that
 *   waits for that expiry too, and stops every member meanwhile (measured on Kafka 4.4: the join
 *   phase ended when the session expired, not at the rebalance timeout). With the former 30 s the
 *   dead member's partitions stood still for 30 s and the example's 30 s step timeouts fired. 6 s
 *   is the lowest session a broker accepts by default (group.min.session.timeout.ms = 6000), and
 *   session + one heartbeat + join/sync stays under 10 s. Is it safe on a busy 2-core machine?
 *   kafkajs sends heartbeats from its fetch loop, and sagaflow's eachBatch only dispatches and
 *   returns (subscription.ts), so handlers never hold them back: a member is evicted only if its
 *   event loop stalls ~5 s (five heartbeats missed in a row), far beyond a GC pause. Even then the
 *   cost is one rebalance and some redelivered records, which the inbox dedupes.
 * - heartbeatIntervalMs 1,000 (at most a third of the session): also how soon a live member
 *   learns of a rebalance and rejoins.
 * - rebalanceTimeoutMs 10,000: how long the coordinator waits for members to rejoin (and sync)
 *   before dropping them; kafkajs also waits this plus 5 s for a JoinGroup answer. A kafkajs member
 *   rejoins within one heartbeat, so 10 s is ample; kafkajs' own 60 s only lets a wedged rebalance
 *   last longer. It does not shorten the stall after a crash (see above): the session does.
 *
 * A broker refuses a session outside [group.min.session.timeout.ms, group.max.session.timeout.ms]
 * (INVALID_SESSION_TIMEOUT): raise the session if the broker's minimum is higher.
 */
export interface GroupTiming {
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rebalanceTimeoutMs: number;
}

export const DEFAULT_SESSION_TIMEOUT_MS = 6_000;
export const DEFAULT_REBALANCE_TIMEOUT_MS = 10_000;

/** Fills in the defaults; throws if the heartbeat is not below the session timeout. */
export function groupTiming(o: Partial<GroupTiming> = {}): GroupTiming {
  const sessionTimeoutMs = o.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? Math.max(100, Math.min(1_000, Math.floor(sessionTimeoutMs / 3)));
  const rebalanceTimeoutMs = o.rebalanceTimeoutMs ?? DEFAULT_REBALANCE_TIMEOUT_MS;
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new RangeError(`the Kafka heartbeat interval (${heartbeatIntervalMs} ms) must be below the session timeout (${sessionTimeoutMs} ms), ideally a third of it or less`);
  }
  return { sessionTimeoutMs, heartbeatIntervalMs, rebalanceTimeoutMs };
}
