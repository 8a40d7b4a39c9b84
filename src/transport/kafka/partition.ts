import type { Delivery } from '../contract.js';
import { Fifo } from './delivery.js';

/** One dispatched record, in offset order within its partition. */
export interface Entry {
  readonly offset: bigint;
  done: boolean;
}

export interface Task {
  readonly entry: Entry;
  readonly delivery: Delivery;
}

/**
 * What one subscription knows about one topic-partition: the records dispatched to handlers and not
 * yet finished, per-key queues, and the commit watermark.
 *
 * The commit algorithm (docs/fault-matrix.md, K8): records are dispatched in offset order and finish in any
 * order (different keys run concurrently). The offset that may be committed is the offset of the
 * FIRST dispatched record that has not finished; when every dispatched record has finished, it is
 * the offset after the last one dispatched (`fetchedUpTo`). Everything below the committed offset
 * has finished, so a restart or a rebalance re-delivers only unfinished (or finished but not yet
 * committed) records, never skips one. "Finished" means the handler resolved, or its failure was
 * stored durably as a retry or a dead letter (acks=all) first.
 */
export class PartitionState {
  readonly #entries = new Fifo<Entry>();
  /** Dispatched and not finished. */
  pending = 0;
  /**
   * Every offset below this one was dispatched (or was a control record). A record re-fetched below
   * it (after a rebalance or a consumer re-creation re-reads from the committed offset) is already
   * in this pipeline, running or done, and is skipped: it must not run twice in this process.
   */
  fetchedUpTo: bigint | undefined;
  /** The last offset this subscription committed (undefined: none yet). */
  committed: bigint | undefined;
  /** Per key: the tasks waiting, the head one running. A key runs one handler at a time, in order. */
  readonly keys = new Map<string, Fifo<Task>>();
  /** Paused because the partition or the subscription has too many unfinished records. */
  capacityPaused = false;
  /** Paused until the head record of a retry topic is due. */
  dueTimer: NodeJS.Timeout | undefined;
  /** Not in the consumer's current assignment: forgotten once drained and committed. */
  revoked = false;

  constructor(
    readonly topic: string,
    readonly partition: number,
    /** A retry topic: records wait for the due time in their header. */
    readonly retry: boolean,
  ) {}

  add(offset: bigint): Entry {
    const entry: Entry = { offset, done: false };
    this.#entries.push(entry);
    this.pending++;
    if (this.fetchedUpTo === undefined || offset >= this.fetchedUpTo) this.fetchedUpTo = offset + 1n;
    return entry;
  }

  /** Offsets up to `next` (exclusive) were fetched and need no handler (control records). */
  advanceTo(next: bigint): void {
    if (this.fetchedUpTo === undefined || next > this.fetchedUpTo) this.fetchedUpTo = next;
  }

  finish(entry: Entry): void {
    if (entry.done) return;
    entry.done = true;
    this.pending--;
    while (this.#entries.peek()?.done) this.#entries.shift();
  }

  /** The offset to commit: the first unfinished record, else the next one to fetch. */
  watermark(): bigint | undefined {
    return this.#entries.peek()?.offset ?? this.fetchedUpTo;
  }

  needsCommit(): boolean {
    const w = this.watermark();
    return w !== undefined && (this.committed === undefined || w > this.committed);
  }
}
