import type { Channel, Message } from 'amqplib';

/**
 * The acks of one consumer channel. Delivery tags are per channel, so once the channel is gone its
 * pending acks are dropped, never sent on a newer channel: RabbitMQ closes a channel that acks an
 * unknown tag (406 PRECONDITION_FAILED, amqp-node/amqplib#271); the broker redelivers those
 * messages instead and the inbox dedupes them.
 *
 * Acks are coalesced per event-loop turn: the longest run of finished deliveries at the head of
 * the channel's unacked window goes out as ONE `basic.ack multiple=true`, the rest one by one.
 * Handlers resolve in batches (the worker commits many messages per transaction), so a batch costs
 * one frame instead of dozens; on a quorum queue each ack frame is a Raft command. A multiple ack
 * is only ever sent for a tag that is itself unacked (a tag acked twice would close the channel).
 */
export class ChannelAcks {
  #alive = true;
  /** Delivered and not yet acked or nacked, in delivery (= tag) order. */
  readonly #outstanding = new Set<number>();
  /** Handler resolved; ack not sent yet. */
  readonly #done = new Map<number, Message>();
  #scheduled = false;

  constructor(
    readonly ch: Channel,
    private readonly onDropped: (count: number) => void,
  ) {}

  get alive(): boolean {
    return this.#alive;
  }

  delivered(msg: Message): void {
    if (this.#alive) this.#outstanding.add(msg.fields.deliveryTag);
  }

  ack(msg: Message): void {
    if (!this.#alive) {
      this.onDropped(1);
      return;
    }
    this.#done.set(msg.fields.deliveryTag, msg);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Returns the message to the queue now (not coalesced: rare, and must not wait). */
  nack(msg: Message): void {
    if (!this.#alive) return;
    const tag = msg.fields.deliveryTag;
    this.#outstanding.delete(tag);
    this.#done.delete(tag);
    try {
      this.ch.nack(msg, false, true);
    } catch {
      this.kill(); // IllegalOperationError: the channel closed; the broker requeues it anyway
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (!this.#alive || this.#done.size === 0) return;
    let last: Message | undefined;
    for (const tag of this.#outstanding) {
      const m = this.#done.get(tag);
      if (!m) break;
      last = m;
      this.#outstanding.delete(tag);
      this.#done.delete(tag);
    }
    try {
      if (last) this.ch.ack(last, true);
      for (const [tag, m] of this.#done) {
        this.ch.ack(m, false);
        this.#outstanding.delete(tag);
      }
      this.#done.clear();
    } catch {
      this.kill();
    }
  }

  /** The channel is gone (or going): drop what was not sent. */
  kill(): void {
    if (!this.#alive) return;
    this.#alive = false;
    if (this.#done.size > 0) this.onDropped(this.#done.size);
    this.#done.clear();
    this.#outstanding.clear();
  }
}
