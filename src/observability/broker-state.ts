/**
 * Whether the broker is connected and our consumers consume, from the events the transports
 * already emit (read duck-typed, so the memory transport, which cannot lose its broker, is always
 * ready): RabbitMQ's 'disconnected' / 'connected' / 'reconnected', 'blocked' / 'unblocked' and
 * 'consumer-cancelled' / 'consumer-restored'; Kafka's 'crash' / 'joined' / 'recreated' and 'fatal'.
 */
export interface BrokerState {
  /** Null when the broker is usable; else why not, for /readyz. */
  problem(): string | null;
  dispose(): void;
}

interface Emitter {
  on(event: string, listener: (arg: unknown) => void): unknown;
  off(event: string, listener: (arg: unknown) => void): unknown;
}

function consumerOf(arg: unknown): string {
  const c = (arg as { consumer?: unknown } | null)?.consumer;
  return typeof c === 'string' ? c : '?';
}

export function watchBroker(transport: object): BrokerState {
  const events = (transport as { events?: unknown }).events as Emitter | undefined;
  if (!events || typeof events.on !== 'function') return { problem: () => null, dispose: () => {} };
  let connected = true;
  let blocked = false;
  let fatal: string | null = null;
  const stalled = new Set<string>();
  const handlers: Record<string, (arg: unknown) => void> = {
    disconnected: () => (connected = false),
    connected: () => (connected = true),
    reconnected: () => (connected = true),
    blocked: () => (blocked = true),
    unblocked: () => (blocked = false),
    'consumer-cancelled': (a) => stalled.add(consumerOf(a)),
    'consumer-restored': (a) => stalled.delete(consumerOf(a)),
    crash: (a) => stalled.add(consumerOf(a)),
    joined: (a) => stalled.delete(consumerOf(a)),
    recreated: (a) => stalled.delete(consumerOf(a)),
    fatal: (a) => (fatal = a instanceof Error ? a.message : 'a consumer could not be restored'),
  };
  for (const [e, h] of Object.entries(handlers)) events.on(e, h);
  return {
    problem() {
      if (fatal) return `broker consumer failed for good: ${fatal}`;
      if (!connected) return 'broker connection lost (reconnecting)';
      if (blocked) return 'broker blocks publishing (resource alarm)';
      if (stalled.size > 0) return `not consuming: ${[...stalled].sort().join(', ')}`;
      return null;
    },
    dispose() {
      for (const [e, h] of Object.entries(handlers)) events.off(e, h);
    },
  };
}
