import { Fifo } from './delivery.js';

/** Handler slots of a subscription, handed out in request order; close() turns waiters away. */
export class Slots {
  #free: number;
  #closed = false;
  readonly #waiters = new Fifo<(ok: boolean) => void>();

  constructor(size: number) {
    this.#free = Math.max(1, size);
  }

  tryTake(): boolean {
    if (this.#closed || this.#free === 0 || this.#waiters.length > 0) return false;
    this.#free--;
    return true;
  }

  /** Resolves true with a slot, or false when closed. */
  take(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  give(): void {
    const next = this.#waiters.shift();
    if (next && !this.#closed) next(true);
    else this.#free++;
  }

  close(): void {
    this.#closed = true;
    for (let w = this.#waiters.shift(); w; w = this.#waiters.shift()) w(false);
  }
}
