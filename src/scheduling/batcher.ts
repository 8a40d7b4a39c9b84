/**
 * Group commit: items submitted while a batch is being processed wait and go together in the
 * next one. A batch starts on the next turn of the event loop after the first item (so a burst of
 * deliveries parsed from one socket read travels together), or at once when `maxBatch` items wait.
 * There is no timer: an idle system processes a lone message immediately.
 */
export type Outcome<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

export interface BatcherOptions<I, R> {
  readonly maxBatch: number;
  /** Batches processed at once (each uses its own database connection). */
  readonly maxConcurrent: number;
  /**
   * Extra batches beyond maxConcurrent, taken only by a short queue (at most `spareQueueMax`
   * items): at moderate load a few messages need not wait for a large batch to finish, while under
   * pressure the queue is long, the spare slots stay unused and batches stay large. Default 0.
   */
  readonly spare?: number;
  /** The longest queue a spare slot takes. Default maxBatch / 8 (at least 1). */
  readonly spareQueueMax?: number;
  /** Must return one outcome per item, in order. Throwing fails every item with that error. */
  readonly run: (items: I[]) => Promise<Outcome<R>[]>;
}

interface Pending<I, R> {
  readonly item: I;
  readonly resolve: (r: R) => void;
  readonly reject: (e: unknown) => void;
}

export class Batcher<I, R> {
  #queue: Pending<I, R>[] = [];
  #running = 0;
  #scheduled = false;
  readonly #idle = new Set<() => void>();
  /** Sizes of the batches run so far (bench and tests). */
  batches = 0;
  items = 0;

  constructor(private readonly opts: BatcherOptions<I, R>) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#queue.length >= this.opts.maxBatch) this.#pump();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.#running > 0 || this.#queue.length > 0) {
      await new Promise<void>((resolve) => this.#idle.add(resolve));
    }
  }

  #pump(): void {
    const spareMax = this.opts.spareQueueMax ?? Math.max(1, Math.floor(this.opts.maxBatch / 8));
    const slots = (): boolean =>
      this.#running < this.opts.maxConcurrent || (this.#running < this.opts.maxConcurrent + (this.opts.spare ?? 0) && this.#queue.length <= spareMax);
    while (this.#queue.length > 0 && slots()) {
      const batch = this.#queue.splice(0, this.opts.maxBatch);
      this.#running++;
      this.batches++;
      this.items += batch.length;
      void this.#run(batch).finally(() => {
        this.#running--;
        this.#pump();
        if (this.#running === 0 && this.#queue.length === 0) {
          for (const w of this.#idle) w();
          this.#idle.clear();
        }
      });
    }
  }

  async #run(batch: Pending<I, R>[]): Promise<void> {
    let outcomes: Outcome<R>[];
    try {
      outcomes = await this.opts.run(batch.map((p) => p.item));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (!o) p.reject(new Error('batch returned fewer outcomes than items'));
      else if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  }
}
