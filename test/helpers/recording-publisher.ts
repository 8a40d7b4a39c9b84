import type { OutgoingMessage, Publisher } from '../../src/transport/contract.js';

/**
 * A Publisher for outbox tests: records every message it confirmed (and every call), and fails
 * calls on demand. `failWith(call)` returns the error to throw for a call (1-based), or undefined
 * to confirm it; messages of a PublishError's `failedIds` are not confirmed, the others are.
 */
export interface PublishCall {
  readonly n: number;
  readonly messages: readonly OutgoingMessage[];
}

export class RecordingPublisher implements Publisher {
  readonly calls: PublishCall[] = [];
  /** Confirmed messages in confirm order (a re-publish appears twice). */
  readonly confirmed: OutgoingMessage[] = [];
  failWith: ((call: PublishCall) => Error | undefined) | undefined;
  /** Runs inside each call before the outcome is decided (e.g. to look at the rows being published). */
  before: ((call: PublishCall) => Promise<void> | void) | undefined;

  constructor(opts: { failWith?: (call: PublishCall) => Error | undefined } = {}) {
    this.failWith = opts.failWith;
  }

  async publish(messages: readonly OutgoingMessage[]): Promise<void> {
    const call = { n: this.calls.length + 1, messages: [...messages] };
    this.calls.push(call);
    // A broker confirm arrives on a later turn of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.before?.(call);
    const err = this.failWith?.(call);
    if (!err) {
      this.confirmed.push(...messages);
      return;
    }
    const failed = new Set((err as { failedIds?: readonly string[] }).failedIds ?? messages.map((m) => m.id));
    this.confirmed.push(...messages.filter((m) => !failed.has(m.id)));
    throw err;
  }

  async close(): Promise<void> {}

  /** How many times each message id was confirmed. */
  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const m of this.confirmed) out.set(m.id, (out.get(m.id) ?? 0) + 1);
    return out;
  }

  confirmedIds(): Set<string> {
    return new Set(this.confirmed.map((m) => m.id));
  }
}
