import type { MemoryTransport } from '../../src/transport/memory.js';
import type { Delivery, Subscriber, Topology, Transport } from '../../src/transport/contract.js';

/**
 * Simulates "crash after COMMIT, before ack" for a real worker on the memory transport: when a
 * handler has resolved (its transaction committed, the ack would follow), the same delivery is
 * handed to the handler once more, flagged `redelivered`, exactly as a broker redelivers an
 * unacked message after the consumer died. Only the redelivery's outcome decides the ack.
 */
export class RedeliveringTransport implements Transport {
  /** Deliveries handed over a second time. */
  redelivered = 0;

  constructor(
    readonly inner: MemoryTransport,
    private readonly shouldRedeliver: (consumer: string, delivery: Delivery) => boolean,
  ) {}

  get features() {
    return this.inner.features;
  }

  get publisher() {
    return this.inner.publisher;
  }

  readonly subscriber: Subscriber = {
    subscribe: (topics, consumer, handler, opts) =>
      this.inner.subscriber.subscribe(
        topics,
        consumer,
        async (d) => {
          await handler(d);
          if (!this.shouldRedeliver(consumer, d)) return;
          this.redelivered++;
          await handler({ ...d, redelivered: true });
        },
        opts,
      ),
    close: () => this.inner.subscriber.close(),
  };

  declare(topology: Topology): Promise<void> {
    return this.inner.declare(topology);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
