import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { UsageError } from '../../src/errors.js';
import { groupTiming } from '../../src/transport/kafka/group-timing.js';

describe('Kafka consumer-group timing', () => {
  it('defaults to a 6 s session (the broker minimum), 1 s heartbeats and a 10 s rebalance timeout', () => {
    expect(groupTiming()).toEqual({ sessionTimeoutMs: 6_000, heartbeatIntervalMs: 1_000, rebalanceTimeoutMs: 10_000 });
    expect(loadConfig({}).kafkaGroup).toEqual({ sessionTimeoutMs: 6_000, heartbeatIntervalMs: 1_000, rebalanceTimeoutMs: 10_000 });
  });

  it('takes each value from its variable; an unset heartbeat is at most a third of the session', () => {
    expect(loadConfig({ SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: '45000', SAGAFLOW_KAFKA_HEARTBEAT_MS: '3000', SAGAFLOW_KAFKA_REBALANCE_TIMEOUT_MS: '20000' }).kafkaGroup).toEqual({
      sessionTimeoutMs: 45_000,
      heartbeatIntervalMs: 3_000,
      rebalanceTimeoutMs: 20_000,
    });
    expect(loadConfig({ SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: '1500' }).kafkaGroup.heartbeatIntervalMs).toBe(500);
  });

  it('refuses a heartbeat that is not below the session timeout, and values out of range, naming the variable', () => {
    expect(() => loadConfig({ SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: '6000', SAGAFLOW_KAFKA_HEARTBEAT_MS: '6000' })).toThrow(UsageError);
    expect(() => loadConfig({ SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: '6000', SAGAFLOW_KAFKA_HEARTBEAT_MS: '6000' })).toThrow(/SAGAFLOW_KAFKA_HEARTBEAT_MS.*must be below the session timeout \(6000 ms\)/);
    expect(() => loadConfig({ SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: '500' })).toThrow(/SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS/);
    expect(() => loadConfig({ SAGAFLOW_KAFKA_REBALANCE_TIMEOUT_MS: 'soon' })).toThrow(/SAGAFLOW_KAFKA_REBALANCE_TIMEOUT_MS/);
    expect(() => groupTiming({ sessionTimeoutMs: 3_000, heartbeatIntervalMs: 5_000 })).toThrow(RangeError);
  });
});
