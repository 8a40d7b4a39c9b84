import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { connect, type ChannelModel } from 'amqplib';
import { errorMessage } from '../../errors.js';
import { redactUrl, type Logger } from '../../log.js';

export interface ReconnectPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export interface ConnectionOptions {
  readonly url: string;
  readonly heartbeatSec: number;
  readonly connectionName: string;
  readonly reconnect: ReconnectPolicy;
  readonly logger: Logger;
  /** Shared with the transport's `events`: 'connected', 'disconnected', 'reconnected', 'blocked', 'unblocked'. */
  readonly events: EventEmitter;
  /** Runs after every successful reconnect (not the first connect); its failure is logged, not fatal. */
  readonly onReconnected: () => Promise<void>;
}

/** Backoff with ±20 % jitter so that many workers cut off together do not reconnect in lock step. */
export function backoffMs(policy: ReconnectPolicy, attempt: number): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Owns the one AMQP connection and its reconnect loop. amqplib does not reconnect unless asked
 * (amqp-node/amqplib#25; opt-in recovery only since v1.1.0), and its recovery wrapper cannot
 * re-declare our topology or re-consume in the order we need, so the loop is ours: on `close` we
 * wait an exponential backoff, connect again, then let the owner restore what it had.
 */
export class ConnectionManager {
  readonly #o: ConnectionOptions;
  readonly #log: Logger;
  #model: ChannelModel | undefined;
  #generation = 0;
  #closing = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #connecting: Promise<void> | undefined;
  #waiters = new Set<{ resolve: (m: ChannelModel) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Successful reconnects after the first connect (tests and health checks read it). */
  reconnects = 0;

  constructor(opts: ConnectionOptions) {
    this.#o = opts;
    this.#log = opts.logger;
  }

  /** Connection generation: grows by one on every (re)connect. */
  get generation(): number {
    return this.#generation;
  }

  get connected(): boolean {
    return this.#model !== undefined;
  }

  current(): ChannelModel | undefined {
    return this.#model;
  }

  /** The first connect fails fast (a wrong URL or password should stop the process at start). */
  async start(): Promise<void> {
    this.#model = await this.#open();
  }

  /** The live connection, waiting for a reconnect up to `timeoutMs`. */
  waitForConnection(timeoutMs: number): Promise<ChannelModel> {
    if (this.#model) return Promise.resolve(this.#model);
    if (this.#closing) return Promise.reject(new Error('RabbitMQ transport is closed'));
    return new Promise<ChannelModel>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new Error(`no RabbitMQ connection within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('RabbitMQ transport is closed'));
    }
    this.#waiters.clear();
    await this.#connecting?.catch(() => {});
    const model = this.#model;
    this.#model = undefined;
    if (model) {
      // close() rejects with IllegalOperationError if the broker closed the connection meanwhile.
      await model.close().catch((err: unknown) => this.#log.debug({ err: errorMessage(err) }, 'connection close failed'));
    }
  }

  async #open(): Promise<ChannelModel> {
    const model = await connect(withHeartbeat(this.#o.url, this.#o.heartbeatSec), {
      // amqplib leaves Nagle on; in request/reply traffic it costs ~20x (measured: docs/performance.md).
      noDelay: true,
      // Bounds the TCP connect + AMQP handshake; amqplib clears it once the connection is open.
      timeout: 10_000,
      keepAlive: true,
      clientProperties: { connection_name: this.#o.connectionName },
    });
    if (this.#closing) {
      await model.close().catch(() => {});
      throw new Error('RabbitMQ transport is closed');
    }
    coalesceWrites((model as unknown as { connection?: { stream?: Socket } }).connection?.stream);
    const generation = ++this.#generation;
    // Listeners never throw: amqplib's safeEmit re-throws a listener's exception into its frame
    // parser (amqp-node/amqplib#334), and an 'error' event with no listener kills the process.
    model.on('error', (err: Error) => {
      this.#log.warn({ err: errorMessage(err), generation }, 'RabbitMQ connection error');
    });
    model.on('handler-error', (err: Error, event: string) => {
      this.#log.error({ err: errorMessage(err), event }, 'a RabbitMQ connection listener threw');
    });
    model.on('blocked', (reason: string) => {
      this.#log.warn({ reason }, 'RabbitMQ blocked publishing (resource alarm); confirms will wait or time out');
      this.#o.events.emit('blocked', { reason });
    });
    model.on('unblocked', () => {
      this.#log.info('RabbitMQ unblocked publishing');
      this.#o.events.emit('unblocked', {});
    });
    model.on('close', (err?: Error) => this.#onClose(model, generation, err));
    this.#log.info({ broker: redactUrl(this.#o.url), connectionName: this.#o.connectionName, generation }, 'RabbitMQ connected');
    this.#o.events.emit('connected', { generation });
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.resolve(model);
    }
    this.#waiters.clear();
    return model;
  }

  #onClose(model: ChannelModel, generation: number, err: Error | undefined): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    if (this.#closing) return;
    this.#log.warn({ err: err ? errorMessage(err) : 'closed', generation }, 'RabbitMQ connection lost; reconnecting');
    this.#o.events.emit('disconnected', { generation, error: err ? errorMessage(err) : undefined });
    this.#attempt = 0;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closing || this.#timer) return;
    const delay = backoffMs(this.#o.reconnect, this.#attempt++);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connecting = this.#reconnect().finally(() => (this.#connecting = undefined));
    }, delay);
  }

  async #reconnect(): Promise<void> {
    if (this.#closing) return;
    try {
      this.#model = await this.#open();
    } catch (err) {
      if (this.#closing) return;
      this.#log.warn({ err: errorMessage(err), attempt: this.#attempt }, 'RabbitMQ reconnect failed; retrying');
      this.#schedule();
      return;
    }
    this.reconnects++;
    this.#o.events.emit('reconnected', { reconnects: this.reconnects, generation: this.#generation });
    try {
      await this.#o.onReconnected();
    } catch (err) {
      this.#log.error({ err: errorMessage(err) }, 'restoring topology after reconnect failed');
    }
  }
}

/**
 * Heartbeats on: without them a black-holed TCP link hangs until OS keepalive (docs/fault-matrix.md).
 * amqplib 2.x treats `heartbeat=0` as "disable" (v2.0.0 changelog), so the value is always explicit.
 * A heartbeat already in the URL wins.
 */
export function withHeartbeat(url: string, heartbeatSec: number): string {
  try {
    const u = new URL(url);
    if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeatSec));
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * amqplib writes every frame set (a publish, an ack) to the socket on its own: one syscall each.
 * Measured here, those writes were the largest single cost of a worker (more than JSON, zod and
 * hashing together). Corking the socket on the first write of a tick and uncorking it on the next
 * tick turns all writes of one turn of the event loop (amqplib's mux flushes its channels in one
 * synchronous loop) into a single writev, without delaying anything past the current tick.
 */
function coalesceWrites(socket: Socket | undefined): void {
  if (!socket || typeof socket.cork !== 'function') return;
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = ((...args: unknown[]) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as Socket['write'];
}
