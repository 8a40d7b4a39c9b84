/**
 * The failed-authentication limiter on a fake clock: a burst is allowed, then the address is
 * refused until failures drip back; log lines are per burst (start, block, a summary at most once
 * a minute), and memory stays bounded under a flood of distinct addresses.
 */
import { describe, expect, it } from 'vitest';
import { AuthFailureLimiter } from '../../src/http/auth-failures.js';
import { captureLogger } from '../helpers/capture-logger.js';

const OPTS = { burst: 3, perSecond: 0.5, maxAddresses: 50, summaryEveryMs: 60_000 };

function setup(opts = OPTS) {
  let now = 1_000_000;
  const cap = captureLogger('info');
  const limiter = new AuthFailureLimiter(opts, () => now);
  const fail = (ip: string) => limiter.fail(ip, cap.logger, { route: '/v1/sagas', why: 'invalid bearer token' });
  const refuse = (ip: string) => limiter.refuse(ip, cap.logger);
  return { limiter, cap, fail, refuse, advance: (ms: number) => (now += ms) };
}

describe('AuthFailureLimiter', () => {
  it('allows a burst of failures, then refuses the address until failures drip back', () => {
    const { fail, refuse, advance } = setup();
    for (let i = 0; i < 3; i++) {
      expect(refuse('a')).toBe(0);
      fail('a');
    }
    expect(refuse('a')).toBe(2000); // one failure back every 2 s
    expect(refuse('b'), 'other addresses are not affected').toBe(0);
    advance(1500);
    expect(refuse('a')).toBe(500);
    advance(500);
    expect(refuse('a')).toBe(0);
    fail('a');
    expect(refuse('a')).toBe(2000);
  });

  it('logs per burst: its start, the block, then at most one summary a minute; a burst after a quiet spell logs again', () => {
    const { cap, fail, refuse, advance } = setup({ ...OPTS, perSecond: 0.01 });
    // What the auth hook does: a blocked address is refused before its token is looked at.
    const attempt = (ip: string) => (refuse(ip) > 0 ? 429 : (fail(ip), 401));
    const statuses = Array.from({ length: 500 }, () => attempt('a'));
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(cap.lines.map((l) => l.msg)).toEqual(['admin authentication failed', 'too many failed admin authentications from a: answering 429 to it for 100 s']);
    advance(61_000);
    for (let i = 0; i < 100; i++) attempt('a');
    expect(cap.lines).toHaveLength(3);
    expect(cap.lines[2]).toMatchObject({ msg: 'failed admin authentications from a go on', refusedSinceLastLine: 498, failedSinceLastLine: 0 });
    for (let i = 0; i < 100; i++) attempt('a');
    expect(cap.lines).toHaveLength(3);
    // Quiet long enough for the bucket to refill: the next failure starts a new burst.
    advance(400_000);
    attempt('a');
    expect(cap.lines).toHaveLength(4);
    expect(cap.lines[3]!.msg).toBe('admin authentication failed');
  });

  it('remembers at most maxAddresses addresses, forgetting the least recently failing first', () => {
    const { limiter, fail, refuse } = setup();
    for (let i = 0; i < 3; i++) fail('attacker');
    for (let i = 0; i < 10_000; i++) fail(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(OPTS.maxAddresses);
    // The flood pushed the attacker out: bounded memory has that price.
    expect(refuse('attacker')).toBe(0);
    // The most recent ones are still known (and blocked after their burst).
    for (let i = 0; i < 3; i++) fail('10.0.39.15');
    expect(refuse('10.0.39.15')).toBeGreaterThan(0);
  });
});
