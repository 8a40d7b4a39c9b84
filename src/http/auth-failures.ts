import type { FastifyBaseLogger } from 'fastify';

/**
 * Failed authentications per client address: a token bucket of failures. An address may fail
 * `burst` times at once and gets one failure back every `1 / perSecond` seconds; with its bucket
 * empty, every request from it is answered 429 with Retry-After before its token is even looked at
 * (so guessing goes no faster and costs the server no hashing), a valid token included - the price
 * of not letting a guesser learn when it guessed right. A successful request does not refill the
 * bucket: a leaked read token must not reset the budget for guessing the admin one.
 *
 * Logging is per burst, not per request: one line when an address starts failing, one when it is
 * blocked, then at most one per `summaryEveryMs` while it keeps going (with the counts since the
 * last line). A burst ends when the bucket is full again.
 *
 * Memory is bounded: at most `maxAddresses` entries; a full table forgets the address that failed
 * least recently (a flood of distinct addresses can so push a blocked one out: the bound wins). Like the per-token limit it is per process and
 * keyed by the socket's address (trustProxy is off): behind a proxy every client shares one bucket,
 * so limit failed logins at the proxy there.
 */
export interface AuthFailureOptions {
  /** Failed attempts an address may make at once. */
  readonly burst: number;
  /** Failed attempts per second an address gets back. */
  readonly perSecond: number;
  /** Addresses remembered at most. */
  readonly maxAddresses: number;
  /** While a burst goes on, a summary line at most this often. */
  readonly summaryEveryMs: number;
}

export const DEFAULT_AUTH_FAILURES: AuthFailureOptions = Object.freeze({ burst: 10, perSecond: 0.1, maxAddresses: 10_000, summaryEveryMs: 60_000 });

interface Entry {
  tokens: number;
  at: number;
  /** Failures and refused requests since the last log line about this address. */
  failed: number;
  refused: number;
  blockLogged: boolean;
  loggedAt: number;
}

export class AuthFailureLimiter {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly opts: AuthFailureOptions = DEFAULT_AUTH_FAILURES,
    private readonly now: () => number = Date.now,
  ) {
    if (!(opts.burst >= 1) || !(opts.perSecond > 0) || !(opts.maxAddresses >= 1)) {
      throw new Error('failed-authentication limit needs burst >= 1, perSecond > 0 and maxAddresses >= 1');
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Milliseconds until `address` may try again (0: it may now). Counts the request as refused when blocked. */
  refuse(address: string, log: FastifyBaseLogger): number {
    const e = this.#entries.get(address);
    if (!e) return 0;
    const t = this.now();
    this.#refill(e, t);
    if (e.tokens >= 1) return 0;
    e.refused++;
    this.#summary(address, e, t, log);
    return this.#waitMs(e);
  }

  /** Records a failed authentication from `address`; logs as described above. */
  fail(address: string, log: FastifyBaseLogger, detail: { route: string | undefined; why: string }): void {
    const t = this.now();
    let e = this.#entries.get(address);
    if (e) {
      this.#refill(e, t);
      this.#entries.delete(address); // re-inserted below: the map's order is least recently seen first
    } else {
      this.#makeRoom();
    }
    if (!e || e.tokens >= this.opts.burst) {
      e = { tokens: this.opts.burst, at: t, failed: 0, refused: 0, blockLogged: false, loggedAt: t };
      log.warn({ ip: address, route: detail.route, why: detail.why }, 'admin authentication failed');
    } else {
      e.failed++;
    }
    this.#entries.set(address, e);
    e.tokens -= 1;
    if (e.tokens < 1 && !e.blockLogged) {
      e.blockLogged = true;
      this.#line(address, e, t, log, `too many failed admin authentications from ${address}: answering 429 to it for ${Math.ceil(this.#waitMs(e) / 1000)} s`);
    } else {
      this.#summary(address, e, t, log);
    }
  }

  #summary(address: string, e: Entry, t: number, log: FastifyBaseLogger): void {
    if (t - e.loggedAt >= this.opts.summaryEveryMs) this.#line(address, e, t, log, `failed admin authentications from ${address} go on`);
  }

  #line(address: string, e: Entry, t: number, log: FastifyBaseLogger, msg: string): void {
    log.warn({ ip: address, failedSinceLastLine: e.failed, refusedSinceLastLine: e.refused }, msg);
    e.failed = 0;
    e.refused = 0;
    e.loggedAt = t;
  }

  #refill(e: Entry, t: number): void {
    e.tokens = Math.min(this.opts.burst, e.tokens + ((t - e.at) / 1000) * this.opts.perSecond);
    e.at = t;
  }

  #waitMs(e: Entry): number {
    return ((1 - e.tokens) / this.opts.perSecond) * 1000;
  }

  #makeRoom(): void {
    // The least recently failing address goes first (the map's order): O(1) even under a flood of
    // distinct addresses, and an address that refilled is one that has not failed for a while.
    for (const k of this.#entries.keys()) {
      if (this.#entries.size < this.opts.maxAddresses) break;
      this.#entries.delete(k);
    }
  }
}
