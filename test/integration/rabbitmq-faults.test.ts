/**
 * RabbitMQ faults at transport level, against the real local broker (docs/fault-matrix.md, RabbitMQ rows):
 * R1 connection closed by the broker under load, R6 consumer cancelled by the server, R9/W9 poison
 * messages (app-side attempts, and the quorum delivery limit for a handler that never settles),
 * and D1 outstanding confirms failing on a channel close or a confirm timeout instead of hanging.
 *
 * Faults are injected with `rabbitmqctl close_connection <pid>` on THIS transport's connections
 * only (found by the connection_name client property): `close_all_connections` would also cut the
 * connections of every other test file sharing the broker.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { createRabbitMqTransport, type RabbitMqTransport, type RabbitMqTransportOptions } from '../../src/transport/rabbitmq/transport.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  H,
  PublishError,
  type Delivery,
  type OutgoingMessage,
} from '../../src/transport/contract.js';
import { nextEvent, waitFor } from '../helpers/wait.js';
import { deleteDeclared } from '../helpers/rabbit-cleanup.js';

const run = promisify(execFile);
const url = inject('services').amqpUrl;
const fileNs = `sfft-${randomBytes(3).toString('hex')}`;
let nsCounter = 0;

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', args, { timeout: 30_000 });
  return stdout;
}

/** Broker-side pids of the connections whose client property connection_name is `name`. */
async function connectionPids(name: string): Promise<string[]> {
  const out = await rabbitmqctl('list_connections', '-q', '--no-table-headers', 'pid', 'client_properties');
  return out
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split('\t')[0]!.trim());
}

async function closeConnections(pids: readonly string[]): Promise<void> {
  for (const pid of pids) await rabbitmqctl('close_connection', pid, 'sagaflow fault test');
}

function logger(): Logger {
  const level = process.env.TEST_LOG_LEVEL;
  return level ? createLogger({ level, name: 'rabbitmq-faults' }) : silentLogger();
}

const transports: RabbitMqTransport[] = [];
const declared = { exchanges: new Set<string>(), queues: new Set<string>() };

async function transport(opts: Partial<RabbitMqTransportOptions> & { namespace: string }): Promise<RabbitMqTransport> {
  const t = await createRabbitMqTransport({
    url,
    logger: logger(),
    reconnect: { initialDelayMs: 50, maxDelayMs: 1_000 },
    confirmTimeoutMs: 10_000,
    ...opts,
  });
  transports.push(t);
  return t;
}

function message(topic: string, id: string): OutgoingMessage {
  return { topic, id, key: `k-${id}`, type: 'fault.Test', body: Buffer.from(JSON.stringify({ id, pad: 'x'.repeat(150) })) };
}

const unexpected: unknown[] = [];
const onUnhandled = (err: unknown) => unexpected.push(err);

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
  process.on('uncaughtException', onUnhandled);
});

afterEach(async () => {
  for (const t of transports.splice(0)) {
    const names = t.declaredNames();
    for (const x of names.exchanges) declared.exchanges.add(x);
    for (const q of names.queues) declared.queues.add(q);
    await t.close();
  }
  // Nothing an amqplib event did may surface as an unhandled error or an uncaught exception.
  expect(unexpected).toEqual([]);
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtException', onUnhandled);
  await deleteDeclared(url, declared);
});

describe('RabbitMQ transport under broker faults', () => {
  it('R1: survives its connection being closed by the broker while 2,000 messages are published and consumed', async () => {
    const namespace = `${fileNs}-r1-${++nsCounter}`;
    const t = await transport({ namespace, prefetch: 50 });
    const topic = 'load';
    const consumer = 'load-consumer';
    await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
    const handled = new Map<string, number>();
    await t.subscriber.subscribe([topic], consumer, async (d) => {
      // Some work per message, so that deliveries are in flight (unacked) when the link drops.
      await new Promise<void>((r) => setTimeout(r, 20));
      handled.set(d.id!, (handled.get(d.id!) ?? 0) + 1);
    });
    const pids = await connectionPids(t.connectionName);
    expect(pids).toHaveLength(1);
    const reconnected = nextEvent(t.events, 'reconnected', () => true, 30_000);

    const ids = Array.from({ length: 2_000 }, (_, i) => `m${i}`);
    const outcomes = { resolved: 0, rejected: 0, other: [] as unknown[] };
    const confirmed = new Set<string>();
    // Like the outbox relay: a failed publish is retried with exactly its failed ids.
    async function publishUntilConfirmed(batch: string[]): Promise<void> {
      let todo = batch;
      const deadline = Date.now() + 45_000;
      while (todo.length > 0 && Date.now() < deadline) {
        try {
          await t.publisher.publish(todo.map((id) => message(topic, id)));
          outcomes.resolved++;
          for (const id of todo) confirmed.add(id);
          todo = [];
        } catch (err) {
          outcomes.rejected++;
          if (!(err instanceof PublishError)) {
            outcomes.other.push(err);
            return;
          }
          const failed = new Set(err.failedIds);
          for (const id of todo) if (!failed.has(id)) confirmed.add(id);
          todo = todo.filter((id) => failed.has(id));
          await new Promise((r) => setTimeout(r, 100)); // relay back-off before the retry
        }
      }
    }
    // Four publishing streams paced at ~800 messages/s in total (about 2.5 s of traffic); the
    // connection is closed ~0.5-1 s in (rabbitmqctl's own start-up time), i.e. mid-stream.
    async function stream(part: string[]): Promise<void> {
      for (let i = 0; i < part.length; i += 5) {
        await publishUntilConfirmed(part.slice(i, i + 5));
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    const streams = [0, 1, 2, 3].map((k) => stream(ids.filter((_, i) => i % 4 === k)));
    await waitFor('traffic flowing', () => handled.size, (n) => n >= 50);
    const fault = closeConnections(pids).then(() => handled.size);
    // Every publish call settles (resolved, or rejected with a PublishError and retried): none hangs.
    await Promise.all(streams);
    const handledAtFault = await fault;
    await reconnected;
    await waitFor('every message handled', () => ids.filter((id) => !handled.has(id)).length, (missing) => missing === 0, {
      timeoutMs: 50_000,
    });

    expect(handledAtFault).toBeLessThan(ids.length); // the fault really hit mid-stream
    expect(outcomes.other).toEqual([]);
    expect(confirmed.size).toBe(ids.length);
    expect([...handled.keys()].sort()).toEqual([...ids].sort());
    expect(t.stats().reconnects).toBeGreaterThanOrEqual(1);
    const duplicates = [...handled.values()].filter((n) => n > 1).length;
    // At least once: duplicates are allowed (unacked deliveries come again), losses are not.
    console.log(
      `[R1] reconnects=${t.stats().reconnects} publishCalls resolved=${outcomes.resolved} rejected=${outcomes.rejected} ` +
        `handledAtFault=${handledAtFault} duplicates=${duplicates} acksDropped=${t.stats().acksDropped}`,
    );
  });

  it('R6: re-establishes a consumer cancelled by the server (queue deleted) and keeps receiving', async () => {
    const namespace = `${fileNs}-r6-${++nsCounter}`;
    const t = await transport({ namespace });
    const topic = 'cancel';
    const consumer = 'cancel-consumer';
    await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
    const seen: string[] = [];
    await t.subscriber.subscribe([topic], consumer, async (d) => {
      seen.push(d.id!);
    });
    await t.publisher.publish(Array.from({ length: 10 }, (_, i) => message(topic, `before${i}`)));
    await waitFor('first 10', () => seen.length, (n) => n >= 10);

    const cancelled = nextEvent(t.events, 'consumer-cancelled', () => true, 20_000);
    const restored = nextEvent<{ consumer: string }>(t.events, 'consumer-restored', (e) => e.consumer === consumer, 30_000);
    await rabbitmqctl('delete_queue', t.names.queue(consumer));
    await cancelled;
    await restored;

    await t.publisher.publish(Array.from({ length: 10 }, (_, i) => message(topic, `after${i}`)));
    await waitFor('10 more after the re-establishment', () => seen.filter((id) => id.startsWith('after')).length, (n) => n >= 10);
    expect(t.stats().consumerRestarts).toBeGreaterThanOrEqual(1);
  });

  it('W9/R9: a poison message reaches the DLQ after exactly maxAttempts handler calls while 200 others flow', async () => {
    const namespace = `${fileNs}-w9-${++nsCounter}`;
    const t = await transport({ namespace });
    const topic = 'poison';
    const consumer = 'poison-consumer';
    await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
    let poisonCalls = 0;
    const handled = new Set<string>();
    await t.subscriber.subscribe(
      [topic],
      consumer,
      async (d) => {
        if (d.id === 'poison') {
          poisonCalls++;
          throw new Error('cannot process this one');
        }
        handled.add(d.id!);
      },
      { prefetch: 20, retry: { maxAttempts: 4, delaysMs: [20, 40, 80] } },
    );
    const dead: Delivery[] = [];
    await t.subscriber.subscribe([DEAD_LETTER_TOPIC], DEAD_LETTER_CONSUMER, async (d) => {
      dead.push(d);
    });
    const others = Array.from({ length: 200 }, (_, i) => `ok${i}`);
    await t.publisher.publish([message(topic, 'poison'), ...others.slice(0, 100).map((id) => message(topic, id))]);
    await t.publisher.publish(others.slice(100).map((id) => message(topic, id)));

    await waitFor('the poison message in the DLQ', () => dead.length, (n) => n >= 1);
    await waitFor('all 200 others handled', () => handled.size, (n) => n >= 200);
    expect(poisonCalls).toBe(4);
    expect(dead).toHaveLength(1);
    const d = dead[0]!;
    expect(d.id).toBe('poison');
    expect(d.headers[H.reason]).toBe('MAX_ATTEMPTS_EXCEEDED');
    expect(d.headers[H.consumer]).toBe(consumer);
    expect(d.headers[H.originalTopic]).toBe(topic);
    expect(d.headers[H.attempt]).toBe('4');
  });

  it('R9: with a quorum queue, a handler that never settles is bounded by x-delivery-limit and dead-lettered as DELIVERY_LIMIT', async () => {
    // A crash loop without killing the test process: each time the stuck message is delivered, the
    // broker closes our connection, so the unacked message is requeued with x-delivery-count + 1.
    const namespace = `${fileNs}-dl-${++nsCounter}`;
    const deliveryLimit = 2;
    const t = await transport({ namespace, queueType: 'quorum', deliveryLimit });
    // The recorder lives on another connection, so the connection kills don't touch it.
    const recorder = await transport({ namespace, queueType: 'quorum', deliveryLimit });
    const topic = 'stuck';
    const consumer = 'stuck-consumer';
    await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
    const dead: Delivery[] = [];
    await recorder.subscriber.subscribe([DEAD_LETTER_TOPIC], DEAD_LETTER_CONSUMER, async (d) => {
      dead.push(d);
    });
    const attempts: number[] = [];
    const release: (() => void)[] = [];
    await t.subscriber.subscribe([topic], consumer, (d) => {
      if (d.id !== 'stuck') return Promise.resolve();
      attempts.push(d.attempt);
      return new Promise<void>((resolve) => release.push(resolve)); // never settles (until the end)
    });
    await t.publisher.publish([message(topic, 'stuck')]);

    for (let delivery = 1; delivery <= deliveryLimit + 1; delivery++) {
      await waitFor(`delivery ${delivery} of the stuck message`, () => attempts.length, (n) => n >= delivery);
      const pids = await connectionPids(t.connectionName);
      const reconnected = nextEvent(t.events, 'reconnected', () => true, 30_000);
      await closeConnections(pids);
      await reconnected;
    }
    await waitFor('the stuck message in the DLQ', () => dead.length, (n) => n >= 1);
    for (const r of release) r(); // let close() finish: those acks belong to dead channels and are dropped

    expect(attempts).toEqual([1, 2, 3]); // x-delivery-count + 1
    const d = dead[0]!;
    expect(d.id).toBe('stuck');
    expect(d.headers[H.reason]).toBe('DELIVERY_LIMIT');
    expect(d.headers[H.consumer]).toBe(consumer);
    expect(d.headers[H.originalTopic]).toBe(topic);
    expect(t.features.brokerDeliveryLimit).toBe(true);
  });

  it('D1: a connection closed during a large publish fails the outstanding messages with PublishError (no hang), confirmed ones are kept', async () => {
    const namespace = `${fileNs}-d1-${++nsCounter}`;
    const t = await transport({ namespace });
    const topic = 'bulk';
    const consumer = 'bulk-consumer';
    await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
    const confirmed = new Set<string>();
    let failure: PublishError | undefined;
    let round = 0;
    while (!failure && round < 3) {
      round++;
      const ids = Array.from({ length: 30_000 }, (_, i) => `r${round}-${i}`);
      const pids = await connectionPids(t.connectionName);
      const publishing = t.publisher.publish(ids.map((id) => message(topic, id))).then(
        () => undefined,
        (err: unknown) => err,
      );
      const kill = closeConnections(pids);
      const started = Date.now();
      const err = await publishing;
      await kill;
      expect(Date.now() - started).toBeLessThan(20_000);
      if (err === undefined) {
        for (const id of ids) confirmed.add(id);
        continue; // the publish beat the kill; try again with a fresh connection
      }
      expect(err).toBeInstanceOf(PublishError);
      failure = err as PublishError;
      const failed = new Set(failure.failedIds);
      expect(failed.size).toBeGreaterThan(0);
      expect([...failed].every((id) => ids.includes(id))).toBe(true);
      for (const id of ids) if (!failed.has(id)) confirmed.add(id);
    }
    expect(failure).toBeDefined();
    expect(failure!.code).toBe('CHANNEL_CLOSED');
    expect(failure!.retryable).toBe(true);
    await nextEvent(t.events, 'reconnected', () => true, 30_000).catch(() => undefined);
    await waitFor('a live connection', () => t.stats().reconnects, (n) => n >= 1);

    // Every message the transport reported confirmed is really in the queue.
    const received = new Set<string>();
    await t.subscriber.subscribe([topic], consumer, async (d) => {
      received.add(d.id!);
    });
    await waitFor(
      'every confirmed message delivered',
      () => [...confirmed].filter((id) => !received.has(id)).length,
      (missing) => missing === 0,
      { timeoutMs: 50_000 },
    );
    console.log(`[D1] rounds=${round} confirmed=${confirmed.size} failed=${failure!.failedIds.length}`);
  });

  it('R7: an exchange deleted behind the transport fails only its messages (UNROUTABLE) and the channel is reopened', async () => {
    const namespace = `${fileNs}-r7-${++nsCounter}`;
    const t = await transport({ namespace });
    await t.declare({
      topics: [{ name: 'kept' }, { name: 'doomed' }],
      consumers: [
        { consumer: 'kept-c', topics: ['kept'] },
        { consumer: 'doomed-c', topics: ['doomed'] },
      ],
    });
    const seen = new Set<string>();
    await t.subscriber.subscribe(['kept'], 'kept-c', async (d) => {
      seen.add(d.id!);
    });
    await t.publisher.publish([message('doomed', 'd0'), message('kept', 'k0')]);
    // Another client deletes the exchange: the transport still believes it exists.
    const admin = await connect(url);
    admin.on('error', () => {});
    const ch = await admin.createChannel();
    await ch.deleteExchange(t.names.exchange('doomed'));
    await admin.close();

    const err = await t.publisher.publish([message('doomed', 'd1')]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe('UNROUTABLE');
    expect((err as PublishError).failedIds).toEqual(['d1']);
    // Now known to be missing: checked first, so it no longer takes the publish channel down with it.
    const err2 = await t.publisher.publish([message('kept', 'k1'), message('doomed', 'd2'), message('kept', 'k2')]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err2 as PublishError).code).toBe('UNROUTABLE');
    expect((err2 as PublishError).failedIds).toEqual(['d2']);
    await waitFor('k0, k1, k2 delivered', () => ['k0', 'k1', 'k2'].every((id) => seen.has(id)), Boolean);
  });

  it('R6b: a retry queue deleted under a running consumer is declared again; the retry still happens', async () => {
    const namespace = `${fileNs}-rq-${++nsCounter}`;
    const t = await transport({ namespace });
    await t.declare({ topics: [{ name: 'rq' }], consumers: [{ consumer: 'rq-c', topics: ['rq'] }] });
    const attempts: number[] = [];
    await t.subscriber.subscribe(
      ['rq'],
      'rq-c',
      async (d) => {
        attempts.push(d.attempt);
        if (d.attempt === 1) throw new Error('first try fails');
      },
      { retry: { maxAttempts: 3, delaysMs: [50] } },
    );
    await rabbitmqctl('delete_queue', t.names.retryQueue('rq-c', 50));
    await t.publisher.publish([message('rq', 'needs-retry')]);
    // attempt 1 fails, the retry copy is returned (no queue), the queue is re-declared and the
    // original requeued; attempt 1 again fails, and this time the retry copy is stored.
    await waitFor('the retried delivery', () => attempts, (a) => a.includes(2));
    expect(attempts.filter((a) => a === 2)).toHaveLength(1);
    expect(attempts[attempts.length - 1]).toBe(2);
  });

  it('checks the effective queue arguments at declare(): a queue with other arguments is a clear CONFIG_INVALID error, not deleted', async () => {
    const namespace = `${fileNs}-args-${++nsCounter}`;
    const classic = await transport({ namespace, queueType: 'classic' });
    await classic.declare({ topics: [{ name: 'x' }], consumers: [{ consumer: 'x-c', topics: ['x'] }] });
    await classic.publisher.publish([message('x', 'kept-1')]);
    const quorum = await transport({ namespace, queueType: 'quorum' });
    const err = await quorum.declare({ topics: [{ name: 'x' }], consumers: [{ consumer: 'x-c', topics: ['x'] }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toBe('CONFIG_INVALID');
    expect((err as Error).message).toContain(`'${quorum.names.queue('x-c')}'`);
    expect((err as Error).message).toMatch(/inequivalent arg 'x-/);
    // The existing queue and its message are untouched.
    const seen: string[] = [];
    await classic.subscriber.subscribe(['x'], 'x-c', async (d) => {
      seen.push(d.id!);
    });
    await waitFor('the message in the existing queue', () => seen, (s) => s.includes('kept-1'));
  });

  it('D1: a confirm that does not come within confirmTimeoutMs fails with PUBLISH_TIMEOUT naming the unconfirmed ids', async () => {
    const namespace = `${fileNs}-to-${++nsCounter}`;
    const t = await transport({ namespace, confirmTimeoutMs: 5 });
    const topic = 'slow';
    await t.declare({ topics: [{ name: topic, requireRoute: false }], consumers: [] });
    await t.publisher.publish([message(topic, 'warm-up')]).catch(() => undefined); // opens the channels
    const ids = Array.from({ length: 20_000 }, (_, i) => `t${i}`);
    const started = Date.now();
    const err = await t.publisher.publish(ids.map((id) => message(topic, id))).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PublishError);
    const pe = err as PublishError;
    expect(pe.code).toBe('PUBLISH_TIMEOUT');
    expect(pe.failedIds.length).toBeGreaterThan(0);
    expect(pe.failedIds.every((id) => id.startsWith('t'))).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
