/**
 * Fairness of the rate limits across processes, against a real Postgres (two RateGates instances
 * stand in for two orchestrator processes sharing the buckets): a tenant that floods a gate beyond
 * its `perTenant` share waits in its own queue and takes none of the gate's tokens, so another
 * tenant served by another process still gets through at once. The flood is as fast as the machine
 * allows; the assertions count tokens and refusals, not time.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitPolicy } from '../../src/resilience/policy.js';
import { RateGates } from '../../src/resilience/rate-gates.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_rate_fair', pool: 4 });
});
afterAll(async () => t?.drop());

// 20/s for the gate with a burst of 5; a tenant at most 0.5/s (one token, then one every 2 s).
const policies = new Map([['payment', rateLimitPolicy('payment', { perSecond: 20, burst: 5, perTenant: 0.5 })]]);
const orchestrator = () => new RateGates({ schema: t.schema, db: t.db, policies });

async function ask(g: RateGates, tenantId: string) {
  return g.begin().admit(t.db, 'payment', randomUUID(), { commandId: randomUUID(), tenantId, wasHeld: false });
}

async function bucket(tenant: string) {
  const rows = await orchestrator().store.list(t.db);
  return rows.find((r) => r.gate === 'payment' && r.tenant === tenant);
}

describe('rate limits: one tenant cannot starve the others', () => {
  it('a tenant flooding beyond its share is refused in its own queue and spends none of the gate tokens', async () => {
    const p1 = orchestrator();
    const p2 = orchestrator();
    const outcomes = [];
    for (let i = 0; i < 200; i++) outcomes.push(await ask(p1, 'tenant-a'));
    const admitted = outcomes.filter((o) => o === null).length;
    const refused = outcomes.filter((o) => o !== null);
    // Its share: the one token of its bucket (plus one per 2 s of the flood, should it last that long).
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(admitted).toBeLessThanOrEqual(3);
    // Every refusal is the tenant's own, queued one per 1/perTenant, none from the gate's bucket.
    expect(new Set(refused.map((r) => r!.reason))).toEqual(new Set(['waiting: rate limit payment tenant tenant-a']));
    const delays = refused.map((r) => r!.delayMs);
    expect(delays.at(-1)!).toBeGreaterThan(delays[0]!);
    // The gate's bucket gave only what the admitted commands needed (a lease of perSecond x 100 ms).
    expect((await bucket(''))!.taken).toBeLessThanOrEqual(admitted * 2);
    expect((await bucket('tenant-a'))!.taken).toBe(admitted);
    // Another tenant, in another process, gets through at once, again and again within its burst.
    expect(await ask(p2, 'tenant-b')).toBeNull();
    expect(await ask(p2, 'tenant-c')).toBeNull();
    expect(await ask(p2, 'tenant-d')).toBeNull();
  });
});
