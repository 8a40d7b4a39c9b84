/**
 * A per-key token bucket, in memory: enough to stop a runaway script or a stuck dashboard from
 * hammering the database through one token. It is per process (several `serve` processes each
 * allow the full rate) and is not a defence against a distributed attack; that belongs in front.
 */
export interface RateLimitOptions {
  /** Requests a key may make at once. */
  readonly burst: number;
  /** Requests per second a key gets back. */
  readonly perSecond: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = Object.freeze({ burst: 120, perSecond: 20 });

export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly opts: RateLimitOptions,
    private readonly now: () => number = Date.now,
  ) {
    if (!(opts.burst >= 1) || !(opts.perSecond > 0)) throw new Error('rate limit needs burst >= 1 and perSecond > 0');
  }

  /** Takes one request from `key`'s bucket: 0 when allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const t = this.now();
    const b = this.#buckets.get(key) ?? { tokens: this.opts.burst, at: t };
    b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) / 1000) * this.opts.perSecond);
    b.at = t;
    this.#buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return ((1 - b.tokens) / this.opts.perSecond) * 1000;
  }
}
