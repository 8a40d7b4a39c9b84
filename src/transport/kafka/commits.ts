import type { EachBatchPayload } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { PartitionState } from './partition.js';

export type Commit = EachBatchPayload['commitOffsetsIfNecessary'];

export interface OffsetCommitsDeps {
  readonly group: string;
  readonly logger: Logger;
  readonly stats: { commits: number };
  /** How often finished offsets are committed. */
  readonly intervalMs: number;
  /** The subscription's partitions (shared: the subscription adds them, this forgets revoked ones). */
  readonly parts: Map<string, PartitionState>;
  isClosing(): boolean;
}

/**
 * The offset commits of one subscription (autoCommit is off): every `intervalMs` after a record
 * finished, one OffsetCommit request for every partition whose watermark moved, never past an
 * unfinished record (see PartitionState).
 */
export class OffsetCommits {
  #commit: Commit | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #again = false;

  constructor(private readonly d: OffsetCommitsDeps) {}

  /** The commit function of the consumer's current generation (undefined while it is re-created). */
  use(commit: Commit | undefined): void {
    this.#commit = commit;
  }

  schedule(): void {
    if (this.#timer || this.d.isClosing()) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, this.d.intervalMs);
  }

  /** At close: up to three rounds; false when finished records were left uncommitted. */
  async final(): Promise<boolean> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = () => [...this.d.parts.values()].some((st) => st.needsCommit());
    for (let i = 0; i < 3 && pending(); i++) {
      if (this.#flushing) await this.#flushing;
      this.#again = false;
      await this.#flush();
    }
    return !pending();
  }

  /** Commits every partition whose watermark moved; one OffsetCommit request for all of them. */
  #flush(): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return this.#flushing;
    }
    this.#flushing = this.#commitWatermarks()
      .catch((err: unknown) => this.d.logger.warn({ group: this.d.group, err: errorMessage(err) }, 'kafka offset commit round failed'))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
    return this.#flushing;
  }

  async #commitWatermarks(): Promise<void> {
    const commit = this.#commit;
    if (!commit) return;
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    const sent: [PartitionState, bigint][] = [];
    for (const st of this.d.parts.values()) {
      if (!st.needsCommit()) continue;
      const w = st.watermark()!;
      let list = byTopic.get(st.topic);
      if (!list) byTopic.set(st.topic, (list = []));
      list.push({ partition: st.partition, offset: w.toString() });
      sent.push([st, w]);
    }
    if (sent.length > 0) {
      try {
        await commit({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
        this.d.stats.commits++;
        for (const [st, w] of sent) if (st.committed === undefined || w > st.committed) st.committed = w;
      } catch (err) {
        // A rebalance in progress or a generation change: the next flush, after the rejoin, commits
        // again (the watermark only moves forward). Nothing is lost by a late commit, only redelivered.
        this.d.logger.debug({ group: this.d.group, err: errorMessage(err) }, 'kafka offset commit failed; retrying');
        this.#again = true;
        return;
      }
    }
    // Forget partitions taken away by a rebalance once nothing of theirs is left to commit.
    for (const [k, st] of this.d.parts) {
      if (st.revoked && st.pending === 0 && !st.needsCommit() && !st.dueTimer) this.d.parts.delete(k);
    }
  }
}
