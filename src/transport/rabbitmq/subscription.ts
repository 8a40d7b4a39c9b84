import type { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { DEAD_LETTER_CONSUMER, type DeadLetterSink, type Delivery, type Handler, type RedeliveryPolicy, type Subscription } from '../contract.js';
import { ChannelAcks } from './acks.js';
import { backoffMs, type ConnectionManager, type ReconnectPolicy } from './connection.js';
import { toDelivery } from './delivery.js';
import { FailedDeliveries } from './failures.js';
import type { Names } from './names.js';
import type { ConfirmPublisher } from './publisher.js';
import type { TopologyRegistry } from './topology.js';

export interface SubscriptionDeps {
  readonly connection: ConnectionManager;
  readonly topology: TopologyRegistry;
  readonly publisher: ConfirmPublisher;
  readonly names: Names;
  readonly logger: Logger;
  readonly events: EventEmitter;
  readonly reconnect: ReconnectPolicy;
  readonly timeoutMs: number;
  readonly stats: { acksDropped: number; consumerRestarts: number; recordedDirectly: number };
}

/** The channel a delivery came on. Acks are only valid there: delivery tags are per channel. */
interface Generation {
  readonly ch: Channel;
  readonly n: number;
  readonly acks: ChannelAcks;
  consumerTag: string | undefined;
}

/**
 * One consumer on its own channel. Deliveries are handed to the handler as they arrive, up to
 * `prefetch` at once (the worker batches them), and each is acked only after its handler resolved,
 * on the channel that delivered it. A delivery from a channel that has since closed is never acked
 * on a newer one: its tag would be unknown there, and RabbitMQ answers an unknown tag by closing
 * the channel (406, amqp-node/amqplib#271). The broker redelivers it instead; the inbox dedupes.
 */
export class RabbitSubscription implements Subscription {
  readonly #d: SubscriptionDeps;
  readonly #queue: string;
  readonly #isDlq: boolean;
  readonly #failures: FailedDeliveries;
  #gen: Generation | undefined;
  #genCounter = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #restarting: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wakeTimer: (() => void) | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  /** Wakers of the pauses before a requeue, called by close(). */
  readonly #pauses = new Set<() => void>();

  constructor(
    deps: SubscriptionDeps,
    readonly topics: readonly string[],
    readonly consumer: string,
    readonly handler: Handler,
    readonly prefetch: number,
    readonly retry: RedeliveryPolicy,
    readonly sink: DeadLetterSink | undefined,
  ) {
    this.#d = deps;
    this.#queue = deps.names.queue(consumer);
    this.#isDlq = consumer === DEAD_LETTER_CONSUMER;
    this.#failures = new FailedDeliveries({
      names: deps.names,
      logger: deps.logger,
      stats: deps.stats,
      publisher: deps.publisher,
      topology: deps.topology,
      consumer,
      topics,
      retry,
      sink,
      recorder: this.#isDlq,
      pause: (ms) => this.#pause(ms),
    });
  }

  /** First start: a failure (e.g. 406 on the queue's arguments) rejects subscribe(). */
  async start(): Promise<void> {
    await this.#establish();
  }

  /**
   * Re-establishes the consumer after its channel closed or the broker cancelled it: re-declares its
   * queue, bindings and retry queues (a deleted queue comes back empty), then consumes again, with
   * backoff while that fails. Idempotent while a restart is running.
   */
  restart(reason: string): void {
    if (this.#closed || this.#restarting) return;
    this.#d.stats.consumerRestarts++;
    this.#restarting = (async () => {
      for (let attempt = 0; !this.#closed; attempt++) {
        if (this.#gen?.acks.alive) return;
        try {
          await this.#establish();
          this.#d.logger.info({ consumer: this.consumer, reason }, 'RabbitMQ consumer re-established');
          this.#d.events.emit('consumer-restored', { consumer: this.consumer, reason });
          return;
        } catch (err) {
          if (this.#closed) return;
          const delay = backoffMs(this.#d.reconnect, attempt);
          this.#d.logger.warn({ consumer: this.consumer, err: errorMessage(err), delay }, 'RabbitMQ consumer restart failed; retrying');
          await new Promise<void>((resolve) => {
            this.#wakeTimer = resolve;
            this.#timer = setTimeout(resolve, delay);
          });
          this.#timer = undefined;
          this.#wakeTimer = undefined;
        }
      }
    })()
      .catch((err: unknown) => this.#d.logger.error({ err: errorMessage(err) }, 'RabbitMQ consumer restart loop failed'))
      .finally(() => {
        this.#restarting = undefined;
        // The new channel may have died before this loop ended (its 'close' saw a restart running).
        if (!this.#closed && this.#gen !== undefined && !this.#gen.acks.alive) this.restart(reason);
      });
  }

  /** After a reconnect: cut a restart backoff short, or start a restart if none is running. */
  kick(): void {
    if (this.#closed || this.#gen?.acks.alive) return;
    if (this.#wakeTimer) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#wakeTimer();
    } else {
      this.restart('reconnected');
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#pauses) wake();
    this.#pauses.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#wakeTimer?.();
    // A restart still in progress is not awaited (it may be waiting for a connection that never
    // comes back): it sees #closed and closes whatever channel it opened itself.
    const gen = this.#gen;
    if (gen?.acks.alive && gen.consumerTag !== undefined) {
      // After CancelOk the broker sends no more deliveries for this consumer.
      await gen.ch.cancel(gen.consumerTag).catch((err: unknown) => this.#d.logger.debug({ err: errorMessage(err) }, 'cancel failed'));
    }
    // In-flight handlers finish and ack on the still-open channel; only then is it closed, which
    // returns anything unacked (prefetched but not started) to the queue.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    if (gen) {
      gen.acks.flush();
      gen.acks.kill();
      await gen.ch.close().catch(() => {});
    }
  }

  async #establish(): Promise<void> {
    await this.#d.topology.ensureConsumer(this.consumer, this.topics, this.retry.delaysMs);
    if (this.#closed) return;
    const model = await this.#d.connection.waitForConnection(this.#d.timeoutMs);
    const ch = await model.createChannel();
    const acks = new ChannelAcks(ch, (n) => (this.#d.stats.acksDropped += n));
    const gen: Generation = { ch, n: ++this.#genCounter, acks, consumerTag: undefined };
    ch.on('error', (err: Error) => {
      this.#d.logger.warn({ consumer: this.consumer, err: errorMessage(err) }, 'RabbitMQ consumer channel closed by the broker');
    });
    ch.on('handler-error', (err: Error, event: string) => {
      this.#d.logger.error({ consumer: this.consumer, err: errorMessage(err), event }, 'a consumer channel listener threw');
    });
    ch.on('close', () => {
      const wasCurrent = gen.acks.alive && this.#gen === gen;
      gen.acks.kill();
      // A channel that died under us (connection loss, broker error) is replaced; a closed
      // subscription's channel is not.
      if (wasCurrent && !this.#closed) this.restart('channel closed');
    });
    try {
      await ch.prefetch(this.prefetch);
      const previous = this.#gen;
      this.#gen = gen;
      if (previous?.acks.alive) {
        previous.acks.kill();
        previous.ch.close().catch(() => {});
      }
      const ok = await ch.consume(this.#queue, (msg) => this.#onMessage(gen, msg), { noAck: false });
      gen.consumerTag = ok.consumerTag;
    } catch (err) {
      acks.kill();
      await ch.close().catch(() => {});
      throw err;
    }
    if (this.#closed && this.#gen === gen) {
      // close() ran while we were subscribing: undo. Any delivery that arrived meanwhile was not
      // handled (#closed) and goes back to the queue with the channel.
      acks.kill();
      await ch.close().catch(() => {});
    }
  }

  #onMessage(gen: Generation, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, or it lost its leader): amqplib passes
      // null (consumer cancel notification, amqplib v0.1.0). Drop this channel, its unacked
      // deliveries are gone or requeued, and start over from the declarations.
      this.#d.logger.warn({ consumer: this.consumer, queue: this.#queue }, 'RabbitMQ cancelled the consumer; re-establishing');
      this.#d.events.emit('consumer-cancelled', { consumer: this.consumer, queue: this.#queue });
      if (this.#gen === gen) {
        gen.acks.kill();
        gen.ch.close().catch(() => {});
        this.restart('cancelled by the broker');
      }
      return;
    }
    // Every delivery is tracked, handled or not: a later `ack multiple` must never cover it.
    gen.acks.delivered(msg);
    // A delivery that raced close() (sent before the broker saw our cancel): leave it unacked;
    // closing the channel returns it to the queue. No handler runs once close() was called.
    if (this.#closed) return;
    const p = this.#handle(gen, msg);
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
  }

  async #handle(gen: Generation, msg: ConsumeMessage): Promise<void> {
    let delivery: Delivery;
    try {
      delivery = toDelivery(msg, { names: this.#d.names, consumer: this.consumer, isDeadLetterQueue: this.#isDlq });
    } catch (err) {
      // Unreachable in practice (toDelivery does not throw on any header shape); never lose the message.
      this.#d.logger.error({ consumer: this.consumer, err: errorMessage(err) }, 'could not read a delivery; requeueing');
      this.#nack(gen, msg);
      return;
    }
    try {
      await this.handler(delivery);
    } catch (err) {
      const settle = await this.#failures.handle(delivery, err, () => gen.acks.alive);
      if (settle === 'ack') this.#ack(gen, msg);
      else if (settle === 'requeue') this.#nack(gen, msg);
      return;
    }
    this.#ack(gen, msg);
  }

  #ack(gen: Generation, msg: ConsumeMessage): void {
    gen.acks.ack(msg);
  }

  #nack(gen: Generation, msg: ConsumeMessage): void {
    gen.acks.nack(msg);
  }

  /** Waits before a requeue; cut short by close() (closing the channel returns the message anyway). */
  async #pause(ms: number): Promise<void> {
    if (this.#closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#pauses.add(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
