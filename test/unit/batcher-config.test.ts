/** Group commit (the Batcher) and the configuration parser. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { UsageError } from '../../src/errors.js';
import { Batcher } from '../../src/scheduling/batcher.js';

describe('Batcher', () => {
  it('groups items submitted in one tick into one batch and resolves each with its own outcome', async () => {
    const seen: number[][] = [];
    const b = new Batcher<number, number>({
      maxBatch: 10,
      maxConcurrent: 1,
      run: async (items) => {
        seen.push(items);
        return items.map((i) => (i === 3 ? { ok: false as const, error: new Error('three') } : { ok: true as const, value: i * 2 }));
      },
    });
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => b.submit(i)));
    expect(seen).toEqual([[1, 2, 3, 4]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([2, 4, 'three', 8]);
  });

  it('splits at maxBatch and lets items wait while maxConcurrent batches run (they then go together)', async () => {
    const seen: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, void>({
      maxBatch: 3,
      maxConcurrent: 1,
      run: async (items) => {
        seen.push(items);
        if (seen.length === 1) await gate;
        return items.map(() => ({ ok: true as const, value: undefined }));
      },
    });
    const first = [1, 2, 3].map((i) => b.submit(i));
    await new Promise((r) => setImmediate(r));
    const later = [4, 5, 6, 7].map((i) => b.submit(i));
    release();
    await Promise.all([...first, ...later]);
    expect(seen).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('a throwing run rejects every item of its batch', async () => {
    const b = new Batcher<number, void>({ maxBatch: 5, maxConcurrent: 1, run: () => Promise.reject(new Error('db down')) });
    await expect(b.submit(1)).rejects.toThrow('db down');
  });
});

describe('loadConfig', () => {
  it('has working defaults for a local machine', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ schema: 'sagaflow', transport: 'memory', prefetch: 512, retry: { maxAttempts: 5, delaysMs: [200, 1000, 5000] } });
  });

  it('parses and checks every variable, naming the bad one', () => {
    expect(loadConfig({ SAGAFLOW_TRANSPORT: 'kafka', KAFKA_BROKERS: 'a:1, b:2', SAGAFLOW_RETRY_DELAYS_MS: '10,20' })).toMatchObject({
      transport: 'kafka',
      kafkaBrokers: ['a:1', 'b:2'],
      retry: { delaysMs: [10, 20] },
    });
    expect(() => loadConfig({ SAGAFLOW_TRANSPORT: 'nats' })).toThrow(/SAGAFLOW_TRANSPORT/);
    expect(() => loadConfig({ SAGAFLOW_SCHEMA: 'Bad-Name' })).toThrow(/SAGAFLOW_SCHEMA/);
    expect(() => loadConfig({ SAGAFLOW_PREFETCH: '0' })).toThrow(UsageError);
    expect(() => loadConfig({ SAGAFLOW_ADMIN_TOKENS: 'ops:short:admin' })).toThrow(/shorter than 16/);
    expect(loadConfig({ SAGAFLOW_ADMIN_TOKENS: 'ops:0123456789abcdef:admin,viewer:fedcba9876543210:read' }).adminTokens).toHaveLength(2);
  });

  it('refuses malformed connection settings by name, never quoting a password', () => {
    for (const [name, value] of [
      ['DATABASE_URL', 'postgres://po stgres:hunter22@:::bad'],
      ['DATABASE_URL', 'mysql://root:hunter22@127.0.0.1/db'],
      ['DATABASE_URL', 'hunter22'],
      ['AMQP_URL', 'http://guest:hunter22@127.0.0.1:5672'],
      ['AMQP_URL', 'amqp//guest:hunter22@127.0.0.1'],
      ['KAFKA_BROKERS', '127.0.0.1'],
      ['KAFKA_BROKERS', 'a:1,,b:2'],
    ] as const) {
      let message = '';
      try {
        loadConfig({ [name]: value });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, `${name}=${value}`).toMatch(new RegExp(`^invalid configuration: ${name}: `));
      expect(message).not.toContain('hunter22');
    }
    // What node-postgres and amqplib accept still passes.
    for (const env of [
      { DATABASE_URL: 'postgresql://app:p%40ss@db.internal:6432/app?sslmode=require' },
      { DATABASE_URL: '/var/run/postgresql' },
      { AMQP_URL: 'amqps://u:p@rabbit:5671/vhost' },
      { KAFKA_BROKERS: '[::1]:9092, kafka-0.kafka:9092' },
    ]) {
      expect(() => loadConfig(env), JSON.stringify(env)).not.toThrow();
    }
  });
});
