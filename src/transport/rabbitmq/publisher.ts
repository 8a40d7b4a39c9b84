import type { Channel, ConfirmChannel, Message, Options } from 'amqplib';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { PublishError, type PublishErrorCode, type PublishFailure } from '../contract.js';
import type { ConnectionManager } from './connection.js';

/** A message as it goes on the wire: exchange and AMQP properties already decided. */
export interface RawMessage {
  /** Reported in `PublishError.failedIds`. */
  readonly id: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly options: Options.Publish;
}

interface Failure {
  readonly code: PublishErrorCode;
  readonly retryable: boolean;
  readonly message: string;
}

/** The outcomes of one publish call: resolves once every message is confirmed or failed. */
class Batch {
  readonly outcomes: (Failure | null | undefined)[];
  #remaining: number;
  #resolve!: () => void;
  readonly done: Promise<void>;

  constructor(readonly messages: readonly RawMessage[]) {
    this.outcomes = new Array<Failure | null | undefined>(messages.length);
    this.#remaining = messages.length;
    this.done = new Promise<void>((r) => (this.#resolve = r));
    if (this.#remaining === 0) this.#resolve();
  }

  isSettled(i: number): boolean {
    return this.outcomes[i] !== undefined;
  }

  settle(i: number, failure: Failure | null): void {
    if (this.outcomes[i] !== undefined) return;
    this.outcomes[i] = failure;
    if (--this.#remaining === 0) this.#resolve();
  }

  failRest(from: number, failure: Failure): void {
    for (let i = from; i < this.outcomes.length; i++) this.settle(i, failure);
  }
}

interface Pending {
  readonly batch: Batch;
  readonly index: number;
  readonly returnKey: string | undefined;
  returned: boolean;
}

/** One confirm channel and what is outstanding on it. A lane gets a new one after a close. */
class ChannelState {
  closed = false;
  closeError: Error | undefined;
  readonly pending = new Set<Pending>();
  /** Mandatory messages awaiting their confirm, by exchange + messageId, in publish order. */
  readonly returnable = new Map<string, Pending[]>();
  readonly drainWaiters = new Set<() => void>();
  constructor(readonly ch: ConfirmChannel) {}

  wake(): void {
    for (const w of this.drainWaiters) w();
    this.drainWaiters.clear();
  }
}

interface Lane {
  state: ChannelState | undefined;
  opening: Promise<ChannelState> | undefined;
}

export interface ConfirmPublisherOptions {
  readonly connection: ConnectionManager;
  readonly logger: Logger;
  readonly channels: number;
  readonly confirmTimeoutMs: number;
}

const NACKED = 'message nacked';

/**
 * Publishes on confirm channels with many confirms in flight: every message of a call is written
 * at once (waiting only for 'drain' when amqplib's write buffer is full) and the call resolves
 * when the broker confirmed them all. Awaiting each confirm caps a channel at a few hundred
 * messages/s (docs/performance.md). Every outcome is bounded:
 * - `basic.return` (mandatory, no queue bound) arrives before that message's ack -> UNROUTABLE;
 *   a confirm alone would be silent loss, since the broker confirms unroutable messages.
 * - a channel close fails everything outstanding on it -> CHANNEL_CLOSED. amqplib (>= 1.0.5) calls
 *   the callbacks itself; we also fail our own record of them, since older versions silently
 *   dropped them (amqp-node/amqplib#191).
 * - no confirm within `confirmTimeoutMs` (blocked connection, lost link) -> PUBLISH_TIMEOUT.
 */
export class ConfirmPublisher {
  readonly #o: ConfirmPublisherOptions;
  readonly #lanes: Lane[];
  #next = 0;
  #closed = false;
  readonly #inflight = new Set<Promise<void>>();
  /** Exchanges known to exist: declared by us or checked. Publishing to a missing one closes the channel. */
  readonly #known = new Set<string>(['']);
  readonly #checking = new Map<string, Promise<boolean>>();

  constructor(opts: ConfirmPublisherOptions) {
    this.#o = opts;
    this.#lanes = Array.from({ length: Math.max(1, opts.channels) }, () => ({ state: undefined, opening: undefined }));
  }

  markExchange(name: string): void {
    this.#known.add(name);
  }

  /** Publishes and resolves when all are confirmed; rejects with a PublishError naming exactly the failed ones. */
  async send(messages: readonly RawMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const batch = new Batch(messages);
    if (this.#closed) {
      batch.failRest(0, { code: 'CHANNEL_CLOSED', retryable: true, message: 'the publisher is closed' });
    } else {
      const work = this.#run(batch);
      this.#inflight.add(work);
      try {
        await work;
      } finally {
        this.#inflight.delete(work);
      }
    }
    throwIfFailed(batch);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inflight]);
    await Promise.allSettled(
      this.#lanes.map(async (lane) => {
        const st = lane.state ?? (await lane.opening?.catch(() => undefined));
        lane.state = undefined;
        if (st && !st.closed) await st.ch.close().catch(() => {});
      }),
    );
  }

  async #run(batch: Batch): Promise<void> {
    const deadline = Date.now() + this.#o.confirmTimeoutMs;
    const timer = setTimeout(() => {
      batch.failRest(0, {
        code: 'PUBLISH_TIMEOUT',
        retryable: true,
        message: `no broker confirm within ${this.#o.confirmTimeoutMs} ms`,
      });
    }, this.#o.confirmTimeoutMs);
    try {
      await this.#checkExchanges(batch, deadline);
      // Large batches are spread over the lanes so several channels confirm in parallel.
      const n = batch.messages.length;
      const parts = n >= 64 ? Math.min(this.#lanes.length, Math.ceil(n / 32)) : 1;
      const size = Math.ceil(n / parts);
      const runs: Promise<void>[] = [];
      for (let from = 0; from < n; from += size) runs.push(this.#sendRange(batch, from, Math.min(n, from + size), deadline));
      await Promise.all(runs);
      await batch.done;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A publish to a missing exchange makes the broker close the channel (404), failing unrelated
   *  messages in flight on it; so an exchange we did not declare is checked first, on a scratch channel. */
  async #checkExchanges(batch: Batch, deadline: number): Promise<void> {
    const unknown = new Set<string>();
    for (const m of batch.messages) if (!this.#known.has(m.exchange)) unknown.add(m.exchange);
    for (const exchange of unknown) {
      let exists: boolean;
      try {
        exists = await this.#exchangeExists(exchange, deadline);
      } catch (err) {
        batch.messages.forEach((m, i) => {
          if (m.exchange === exchange) batch.settle(i, { code: 'CHANNEL_CLOSED', retryable: true, message: errorMessage(err) });
        });
        continue;
      }
      if (!exists) {
        batch.messages.forEach((m, i) => {
          if (m.exchange === exchange) {
            batch.settle(i, { code: 'UNROUTABLE', retryable: true, message: `exchange '${exchange}' does not exist (topic not declared)` });
          }
        });
      }
    }
  }

  #exchangeExists(exchange: string, deadline: number): Promise<boolean> {
    let p = this.#checking.get(exchange);
    if (!p) {
      p = this.#checkExchange(exchange, deadline).finally(() => this.#checking.delete(exchange));
      this.#checking.set(exchange, p);
    }
    return p;
  }

  async #checkExchange(exchange: string, deadline: number): Promise<boolean> {
    const model = await this.#o.connection.waitForConnection(Math.max(1, deadline - Date.now()));
    const ch: Channel = await model.createChannel();
    ch.on('error', () => {}); // the expected 404 arrives as a channel error too
    ch.on('handler-error', () => {});
    try {
      await ch.checkExchange(exchange);
      this.#known.add(exchange);
      return true;
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) return false;
      throw err;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async #sendRange(batch: Batch, from: number, to: number, deadline: number): Promise<void> {
    const lane = this.#lanes[this.#next++ % this.#lanes.length]!;
    let st: ChannelState;
    try {
      st = await this.#open(lane, deadline);
    } catch (err) {
      for (let i = from; i < to; i++) batch.settle(i, { code: 'CHANNEL_CLOSED', retryable: true, message: errorMessage(err) });
      return;
    }
    for (let i = from; i < to; i++) {
      if (batch.isSettled(i)) continue; // failed the exchange check, or timed out
      if (st.closed) {
        for (let j = i; j < to; j++) batch.settle(j, closedFailure(st, batch.messages[j]!.exchange));
        return;
      }
      const m = batch.messages[i]!;
      const mandatory = m.options.mandatory === true;
      const p: Pending = {
        batch,
        index: i,
        returnKey: mandatory ? `${m.exchange}\0${m.options.messageId ?? ''}` : undefined,
        returned: false,
      };
      let writable: boolean;
      try {
        st.pending.add(p);
        if (p.returnKey !== undefined) {
          const list = st.returnable.get(p.returnKey);
          if (list) list.push(p);
          else st.returnable.set(p.returnKey, [p]);
        }
        writable = st.ch.publish(m.exchange, m.routingKey, m.body, m.options, (err: unknown) => this.#confirmed(st, p, err));
      } catch (err) {
        // IllegalOperationError when the channel closed under us; RangeError for a header table
        // over 64 KiB (amqplib 2.3.1): the latter is this message's fault and no retry fixes it.
        forget(st, p);
        const range = err instanceof RangeError;
        batch.settle(i, {
          code: range ? 'MESSAGE_TOO_LARGE' : 'CHANNEL_CLOSED',
          retryable: !range,
          message: errorMessage(err),
        });
        continue;
      }
      if (!writable) {
        // amqplib buffers the frame anyway; 'drain' says its buffer is below the high-water mark
        // again (amqp-node/amqplib#365). Without this wait a large publish grows memory unbounded.
        await waitDrain(st, deadline);
      }
    }
  }

  #open(lane: Lane, deadline: number): Promise<ChannelState> {
    if (lane.state && !lane.state.closed) return Promise.resolve(lane.state);
    lane.opening ??= (async () => {
      const model = await this.#o.connection.waitForConnection(Math.max(1, deadline - Date.now()));
      const ch = await model.createConfirmChannel();
      const st = new ChannelState(ch);
      ch.on('error', (err: Error) => {
        st.closeError = err;
        const missing = missingExchange(err);
        if (missing !== undefined) this.#known.delete(missing);
        this.#o.logger.warn({ err: errorMessage(err) }, 'RabbitMQ publish channel closed by the broker');
      });
      ch.on('handler-error', (err: Error, event: string) => {
        this.#o.logger.error({ err: errorMessage(err), event }, 'a publish channel listener threw');
      });
      ch.on('return', (msg: Message) => onReturn(st, msg));
      ch.on('drain', () => st.wake());
      ch.on('close', () => {
        st.closed = true;
        if (lane.state === st) lane.state = undefined;
        st.wake();
        // amqplib has already failed the callbacks it knew of; anything left is failed here.
        for (const p of [...st.pending]) {
          forget(st, p);
          p.batch.settle(p.index, closedFailure(st, p.batch.messages[p.index]!.exchange));
        }
      });
      lane.state = st;
      return st;
    })().finally(() => (lane.opening = undefined));
    return lane.opening;
  }

  #confirmed(st: ChannelState, p: Pending, err: unknown): void {
    forget(st, p);
    const m = p.batch.messages[p.index]!;
    if (err) {
      if (err instanceof Error && err.message === NACKED) {
        p.batch.settle(p.index, { code: 'PUBLISH_FAILED', retryable: true, message: 'the broker nacked the message (queue full or internal error)' });
      } else {
        p.batch.settle(p.index, closedFailure(st, m.exchange));
      }
    } else if (p.returned) {
      p.batch.settle(p.index, { code: 'UNROUTABLE', retryable: true, message: `no queue is bound to exchange '${m.exchange}'` });
    } else {
      p.batch.settle(p.index, null);
    }
  }
}

function forget(st: ChannelState, p: Pending): void {
  st.pending.delete(p);
  if (p.returnKey === undefined) return;
  const list = st.returnable.get(p.returnKey);
  if (!list) return;
  const i = list.indexOf(p);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) st.returnable.delete(p.returnKey);
}

/**
 * basic.return carries the message back, not its delivery tag: it is matched to the oldest
 * outstanding mandatory publish with the same exchange and message id. Returns arrive in publish
 * order before the matching ack, so this is exact unless two messages with the same id go to the same
 * exchange and its bindings change between them.
 */
function onReturn(st: ChannelState, msg: Message): void {
  const key = `${msg.fields.exchange}\0${(msg.properties.messageId as string | undefined) ?? ''}`;
  const list = st.returnable.get(key);
  const p = list?.find((x) => !x.returned);
  if (p) p.returned = true;
}

function closedFailure(st: ChannelState, exchange: string): Failure {
  if (st.closeError && missingExchange(st.closeError) === exchange) {
    return { code: 'UNROUTABLE', retryable: true, message: errorMessage(st.closeError) };
  }
  return {
    code: 'CHANNEL_CLOSED',
    retryable: true,
    message: `publish channel closed before the confirm${st.closeError ? `: ${errorMessage(st.closeError)}` : ''}`,
  };
}

/** "NOT_FOUND - no exchange 'x' in vhost '/'" -> x */
function missingExchange(err: Error): string | undefined {
  return /no exchange '([^']*)'/.exec(err.message)?.[1];
}

function waitDrain(st: ChannelState, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, Math.max(1, deadline - Date.now()));
    function done(): void {
      clearTimeout(timer);
      st.drainWaiters.delete(done);
      resolve();
    }
    st.drainWaiters.add(done);
  });
}

function throwIfFailed(batch: Batch): void {
  const failures: PublishFailure[] = [];
  batch.outcomes.forEach((f, i) => {
    if (f) failures.push({ id: batch.messages[i]!.id, ...f });
  });
  if (failures.length > 0) throw PublishError.of(failures, batch.messages.length);
}
