import type { Publisher, Transport } from './contract.js';

/**
 * Fault injection for reliability testing, switched on explicitly by configuration
 * (SAGAFLOW_FAULT_DUPLICATE_PUBLISH=1), never by NODE_ENV: publishes every message twice, the
 * way a relay retry or a producer retry would, so the consumers' inboxes must absorb it.
 */
export function duplicatingPublisher(inner: Publisher): Publisher {
  return {
    publish: async (messages) => {
      await inner.publish(messages);
      await inner.publish(messages);
    },
    close: () => inner.close(),
  };
}

export function withFaults(transport: Transport, faults: { duplicatePublish: boolean }): Transport {
  if (!faults.duplicatePublish) return transport;
  const publisher = duplicatingPublisher(transport.publisher);
  // Everything else (events, counters, methods using private fields) stays the real transport's.
  return new Proxy(transport, {
    get(target, prop) {
      if (prop === 'publisher') return publisher;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
