/**
 * The transport contract suite (Watermill's "universal tests"): one set of behaviours that every
 * transport must show, run against memory, RabbitMQ and Kafka by a small *.contract.test.ts each.
 * It reads `transport.features` instead of guessing what a broker guarantees (per-key order).
 *
 * Every test declares its own topics and consumers with a random suffix, gets a fresh transport
 * from `makeTransport` (a broker transport gets its own namespace there) and hands it back to
 * `cleanup`. Nothing sleeps to wait for a condition: tests await deliveries with a deadline.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PermanentError, SystemicError } from '../../src/errors.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  H,
  PublishError,
  type Delivery,
  type Handler,
  type OutgoingMessage,
  type Subscription,
  type Transport,
} from '../../src/transport/contract.js';
import { waitFor } from '../helpers/wait.js';

export interface ContractTarget {
  readonly transport: Transport;
  readonly namespace?: string;
  cleanup(): Promise<void>;
}

const RETRY = { maxAttempts: 3, delaysMs: [50] } as const;

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function message(topic: string, id: string, extra: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return { topic, id, key: `key-${id}`, type: 'test.Message', body: Buffer.from(JSON.stringify({ id })), ...extra };
}

/** Records deliveries and lets a test await "n of them" or "this one" with a deadline. */
class Inbox {
  readonly deliveries: Delivery[] = [];
  readonly at: number[] = [];
  push(d: Delivery): void {
    this.deliveries.push(d);
    this.at.push(Date.now());
  }
  ids(): string[] {
    return this.deliveries.map((d) => d.id ?? '?');
  }
  async count(n: number, what = `${n} deliveries`, timeoutMs = 20_000): Promise<void> {
    await waitFor(what, () => this.deliveries.length, (c) => c >= n, { timeoutMs });
  }
  async has(id: string, timeoutMs = 20_000): Promise<Delivery> {
    await waitFor(`delivery of ${id}`, () => this.deliveries.some((d) => d.id === id), Boolean, { timeoutMs });
    return this.deliveries.find((d) => d.id === id)!;
  }
  handler(fn: (d: Delivery) => Promise<void> | void = () => {}): Handler {
    return async (d) => {
      this.push(d);
      await fn(d);
    };
  }
}

export function transportContract(name: string, makeTransport: () => Promise<ContractTarget>): void {
  describe(`transport contract: ${name}`, () => {
    let target: ContractTarget;
    let t: Transport;
    let subs: Subscription[];
    let s: string;

    beforeEach(async () => {
      target = await makeTransport();
      t = target.transport;
      subs = [];
      s = suffix();
    });

    afterEach(async () => {
      await Promise.allSettled(subs.map((x) => x.close()));
      await target.cleanup();
    });

    const subscribe: (...a: Parameters<Transport['subscriber']['subscribe']>) => Promise<Subscription> = async (...a) => {
      const sub = await t.subscriber.subscribe(...a);
      subs.push(sub);
      return sub;
    };

    async function deadLetters(): Promise<Inbox> {
      const dl = new Inbox();
      await subscribe([DEAD_LETTER_TOPIC], DEAD_LETTER_CONSUMER, dl.handler(), { retry: RETRY });
      return dl;
    }

    it('delivers a published message with body, id, type, key and headers intact', async () => {
      const topic = `rt.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer: `c.${s}`, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe([topic], `c.${s}`, inbox.handler());
      const body = Buffer.from(JSON.stringify({ hello: 'wörld', n: 1 }));
      await t.publisher.publish([
        message(topic, `m1-${s}`, { key: 'saga-42', type: 'order.Placed', body, headers: { 'x-trace': 'abc', tenant: 't1' } }),
      ]);
      const d = await inbox.has(`m1-${s}`);
      expect(d.topic).toBe(topic);
      expect(d.id).toBe(`m1-${s}`);
      expect(d.type).toBe('order.Placed');
      expect(d.key).toBe('saga-42');
      expect(d.body.equals(body)).toBe(true);
      expect(d.headers).toMatchObject({ 'x-trace': 'abc', tenant: 't1', [H.messageId]: `m1-${s}`, [H.type]: 'order.Placed', [H.key]: 'saga-42' });
      expect(d.attempt).toBe(1);
      expect(d.redelivered).toBe(false);
    });

    it('fans a topic out to every consumer name', async () => {
      const topic = `fan.${s}`;
      await t.declare({
        topics: [{ name: topic }],
        consumers: [
          { consumer: `a.${s}`, topics: [topic] },
          { consumer: `b.${s}`, topics: [topic] },
        ],
      });
      const a = new Inbox();
      const b = new Inbox();
      await subscribe([topic], `a.${s}`, a.handler());
      await subscribe([topic], `b.${s}`, b.handler());
      const ids = Array.from({ length: 20 }, (_, i) => `f${i}-${s}`);
      await t.publisher.publish(ids.map((id) => message(topic, id)));
      await a.count(20);
      await b.count(20);
      expect(a.ids().sort()).toEqual([...ids].sort());
      expect(b.ids().sort()).toEqual([...ids].sort());
    });

    it('shares one consumer name between competing subscribers, each message handled once', async () => {
      const topic = `compete.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const one = new Inbox();
      const two = new Inbox();
      // A little work per message, so that both subscribers hold deliveries at once.
      const work = () => new Promise<void>((r) => setTimeout(r, 2));
      await subscribe([topic], consumer, one.handler(work), { prefetch: 5 });
      await subscribe([topic], consumer, two.handler(work), { prefetch: 5 });
      const ids = Array.from({ length: 60 }, (_, i) => `c${i}-${s}`);
      await t.publisher.publish(ids.map((id) => message(topic, id)));
      await waitFor('all 60 handled', () => one.deliveries.length + two.deliveries.length, (n) => n >= 60);
      expect([...one.ids(), ...two.ids()].sort()).toEqual([...ids].sort());
      expect(one.deliveries.length).toBeGreaterThan(0);
      expect(two.deliveries.length).toBeGreaterThan(0);
    });

    it('acks after the handler resolved: a handled message is not delivered again to a new subscription', async () => {
      const topic = `ack.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const first = new Inbox();
      const sub = await subscribe([topic], consumer, first.handler());
      const ids = Array.from({ length: 10 }, (_, i) => `a${i}-${s}`);
      await t.publisher.publish(ids.map((id) => message(topic, id)));
      await first.count(10);
      await sub.close();
      const second = new Inbox();
      await subscribe([topic], consumer, second.handler());
      await t.publisher.publish([message(topic, `marker-${s}`)]);
      await second.has(`marker-${s}`);
      expect(second.ids()).toEqual([`marker-${s}`]);
    });

    it('keeps messages published after declare() and before the consumer first subscribes', async () => {
      const topic = `early.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const ids = Array.from({ length: 5 }, (_, i) => `e${i}-${s}`);
      await t.publisher.publish(ids.map((id) => message(topic, id)));
      const inbox = new Inbox();
      await subscribe([topic], consumer, inbox.handler());
      await inbox.count(5);
      expect(inbox.ids().sort()).toEqual([...ids].sort());
    });

    it('redelivers a rejected (retryable) message after a delay with attempt 2', async () => {
      const topic = `retry.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe(
        [topic],
        consumer,
        inbox.handler((d) => {
          if (d.attempt === 1) throw new Error('flaky downstream');
        }),
        { retry: { maxAttempts: 3, delaysMs: [100] } },
      );
      const body = Buffer.from('{"retry":true}');
      await t.publisher.publish([message(topic, `r-${s}`, { body, headers: { 'x-keep': 'me' } })]);
      await inbox.count(2);
      const [a, b] = inbox.deliveries;
      expect([a!.attempt, b!.attempt]).toEqual([1, 2]);
      expect(b!.id).toBe(`r-${s}`);
      expect(b!.topic).toBe(topic);
      expect(b!.key).toBe(`key-r-${s}`);
      expect(b!.type).toBe('test.Message');
      expect(b!.body.equals(body)).toBe(true);
      expect(b!.headers['x-keep']).toBe('me');
      // "after a delay": not a hot requeue (timer granularity allowance).
      expect(inbox.at[1]! - inbox.at[0]!).toBeGreaterThanOrEqual(80);
      // It succeeded on attempt 2: nothing more arrives, nothing is dead-lettered.
      const dl = await deadLetters();
      await t.publisher.publish([message(topic, `after-${s}`)]);
      await inbox.has(`after-${s}`);
      expect(inbox.deliveries.filter((d) => d.id === `r-${s}`)).toHaveLength(2);
      expect(dl.deliveries).toHaveLength(0);
    });

    it('does not count a systemic failure (countsAsAttempt: false) as an attempt', async () => {
      const topic = `sys.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe(
        [topic],
        consumer,
        inbox.handler(() => {
          if (inbox.deliveries.length <= 3) throw new SystemicError('database unavailable');
        }),
        { retry: { maxAttempts: 2, delaysMs: [30] } },
      );
      await t.publisher.publish([message(topic, `s-${s}`)]);
      await inbox.count(4);
      // Three systemic failures with maxAttempts 2 and still not dead-lettered: the budget is intact.
      expect(inbox.deliveries.map((d) => d.attempt)).toEqual([1, 1, 1, 1]);
      const dl = await deadLetters();
      await t.publisher.publish([message(topic, `after-${s}`)]);
      await inbox.has(`after-${s}`);
      expect(dl.deliveries).toHaveLength(0);
    });

    it('dead-letters after maxAttempts with reason MAX_ATTEMPTS_EXCEEDED and the consumer/topic headers', async () => {
      const topic = `max.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe(
        [topic],
        consumer,
        inbox.handler((d) => {
          if (d.id === `x-${s}`) throw new Error('always broken');
        }),
        { retry: RETRY },
      );
      const body = Buffer.from('{"poison":1}');
      await t.publisher.publish([message(topic, `x-${s}`, { body, headers: { 'x-keep': 'me' } })]);
      await inbox.count(3);
      // The recorder subscribes only now: the dead letter was kept for it meanwhile.
      const dl = await deadLetters();
      const d = await dl.has(`x-${s}`);
      expect(inbox.deliveries.map((x) => x.attempt)).toEqual([1, 2, 3]);
      expect(d.topic).toBe(DEAD_LETTER_TOPIC);
      expect(d.body.equals(body)).toBe(true);
      expect(d.type).toBe('test.Message');
      expect(d.key).toBe(`key-x-${s}`);
      expect(d.headers[H.reason]).toBe('MAX_ATTEMPTS_EXCEEDED');
      expect(d.headers[H.consumer]).toBe(consumer);
      expect(d.headers[H.originalTopic]).toBe(topic);
      expect(d.headers[H.attempt]).toBe('3');
      expect(d.headers[H.error]).toContain('always broken');
      expect(d.headers[H.deadLetteredAt]).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(d.headers['x-keep']).toBe('me');
      // Exactly maxAttempts handler calls: nothing after the dead letter.
      await t.publisher.publish([message(topic, `after-${s}`)]);
      await inbox.has(`after-${s}`);
      expect(inbox.deliveries.filter((x) => x.id === `x-${s}`)).toHaveLength(3);
      expect(dl.ids()).toEqual([`x-${s}`]);
    });

    it("counts the dead-letter recorder's own retries apart from the dead letter's recorded headers", async () => {
      const topic = `rec.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      await subscribe(
        [topic],
        consumer,
        async () => {
          throw new Error('always broken');
        },
        { retry: { maxAttempts: 3, delaysMs: [20] } },
      );
      const dl = new Inbox();
      await subscribe(
        [DEAD_LETTER_TOPIC],
        DEAD_LETTER_CONSUMER,
        dl.handler((d) => {
          if (d.attempt === 1) throw new Error('recorder hiccup');
        }),
        { retry: { maxAttempts: 3, delaysMs: [20] } },
      );
      await t.publisher.publish([message(topic, `y-${s}`)]);
      await dl.count(2);
      const [first, second] = dl.deliveries;
      // The recorder's attempts start at 1; the dead letter's H.attempt (data: it died on attempt 3)
      // stays as it was through the recorder's retry.
      expect([first!.attempt, second!.attempt]).toEqual([1, 2]);
      for (const d of [first!, second!]) {
        expect(d.id).toBe(`y-${s}`);
        expect(d.headers[H.attempt]).toBe('3');
        expect(d.headers[H.reason]).toBe('MAX_ATTEMPTS_EXCEEDED');
        expect(d.headers[H.consumer]).toBe(consumer);
        expect(d.headers[H.originalTopic]).toBe(topic);
      }
    });

    it('dead-letters a PermanentError at once with its code', async () => {
      const topic = `perm.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      const dl = await deadLetters();
      await subscribe(
        [topic],
        consumer,
        inbox.handler((d) => {
          if (d.id === `p-${s}`) throw new PermanentError('SCHEMA_INVALID', 'amount must be a string');
        }),
        { retry: RETRY },
      );
      await t.publisher.publish([message(topic, `p-${s}`), message(topic, `ok-${s}`)]);
      const d = await dl.has(`p-${s}`);
      await inbox.has(`ok-${s}`);
      expect(d.headers[H.reason]).toBe('SCHEMA_INVALID');
      expect(d.headers[H.error]).toContain('amount must be a string');
      expect(d.headers[H.consumer]).toBe(consumer);
      expect(d.headers[H.originalTopic]).toBe(topic);
      expect(d.headers[H.attempt]).toBe('1');
      expect(inbox.deliveries.filter((x) => x.id === `p-${s}`)).toHaveLength(1);
    });

    it('dead-letters a message whose copy the broker refuses exactly once, through the DeadLetterSink, with its true reason', async () => {
      // Headers just under amqplib's 64 KiB table limit: accepted on publish, but the dead-letter
      // copy (reason, error, consumer, ... added) cannot be encoded on RabbitMQ. Kafka and memory
      // take the copy. Either way: one dead letter, the true reason, no redelivery loop.
      const topic = `refused.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const dl = await deadLetters();
      const sunk = new Inbox();
      const inbox = new Inbox();
      const why = `amount must be a string ${'x'.repeat(500)}`;
      await subscribe(
        [topic],
        consumer,
        inbox.handler((d) => {
          if (d.id === `big-${s}`) throw new PermanentError('SCHEMA_INVALID', why);
        }),
        { retry: RETRY, deadLetterSink: { record: async (d) => sunk.push(d) } },
      );
      const big = 'h'.repeat(65_536 - 400);
      await t.publisher.publish([message(topic, `big-${s}`, { headers: { 'x-big': big } })]);
      await waitFor('the dead letter, via the topic or the sink', () => dl.deliveries.length + sunk.deliveries.length, (n) => n >= 1);
      await t.publisher.publish([message(topic, `after-${s}`)]);
      await inbox.has(`after-${s}`);
      await dl.count(0);
      const all = [...dl.deliveries, ...sunk.deliveries];
      expect(all).toHaveLength(1);
      const d = all[0]!;
      expect(d.id).toBe(`big-${s}`);
      expect(d.topic).toBe(DEAD_LETTER_TOPIC);
      expect(d.headers[H.reason]).toBe('SCHEMA_INVALID');
      expect(d.headers[H.consumer]).toBe(consumer);
      expect(d.headers[H.originalTopic]).toBe(topic);
      expect(d.headers['x-big']).toBe(big);
      expect(inbox.deliveries.filter((x) => x.id === `big-${s}`)).toHaveLength(1);
      if (t.features.name === 'rabbitmq') expect(sunk.deliveries).toHaveLength(1);
    });

    it('keeps other messages flowing while one waits for its retry (no head-of-line blocking)', async () => {
      const topic = `flow.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe(
        [topic],
        consumer,
        inbox.handler((d) => {
          if (d.id === `slow-${s}` && d.attempt === 1) throw new Error('not yet');
        }),
        // prefetch 1: a hot requeue or a blocked queue head would stall everything behind it.
        { prefetch: 1, retry: { maxAttempts: 3, delaysMs: [1500] } },
      );
      const others = Array.from({ length: 20 }, (_, i) => `o${i}-${s}`);
      await t.publisher.publish([message(topic, `slow-${s}`)]);
      await t.publisher.publish(others.map((id) => message(topic, id)));
      await inbox.count(22);
      const order = inbox.deliveries.map((d) => `${d.id}@${d.attempt}`);
      expect(order[0]).toBe(`slow-${s}@1`);
      expect(order[21]).toBe(`slow-${s}@2`);
      expect(order.slice(1, 21).sort()).toEqual(others.map((id) => `${id}@1`).sort());
    });

    it('rejects an unroutable publish with PublishError UNROUTABLE naming only the failed ids', async () => {
      const routed = `routed.${s}`;
      const lonely = `lonely.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: routed }, { name: lonely }], consumers: [{ consumer, topics: [routed] }] });
      const inbox = new Inbox();
      await subscribe([routed], consumer, inbox.handler());
      const err = await t.publisher
        .publish([
          message(routed, `a-${s}`),
          message(lonely, `b-${s}`),
          message(routed, `c-${s}`),
          message(`undeclared.${s}`, `d-${s}`),
          message(routed, `e-${s}`),
        ])
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(PublishError);
      const pe = err as PublishError;
      expect(pe.code).toBe('UNROUTABLE');
      expect(pe.retryable).toBe(true);
      expect([...pe.failedIds].sort()).toEqual([`b-${s}`, `d-${s}`]);
      await inbox.count(3);
      expect(inbox.ids().sort()).toEqual([`a-${s}`, `c-${s}`, `e-${s}`]);
      // The transport is still fine afterwards.
      await t.publisher.publish([message(routed, `f-${s}`)]);
      await inbox.has(`f-${s}`);
    });

    it('accepts publishes with no consumer on a requireRoute: false topic', async () => {
      const topic = `events.${s}`;
      await t.declare({ topics: [{ name: topic, requireRoute: false }], consumers: [] });
      await expect(t.publisher.publish([message(topic, `ev1-${s}`), message(topic, `ev2-${s}`)])).resolves.toBeUndefined();
    });

    it('keeps per-key order where features.orderedByKey says so', async (ctx) => {
      if (!t.features.orderedByKey) {
        ctx.skip();
        return;
      }
      const topic = `order.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const inbox = new Inbox();
      await subscribe([topic], consumer, inbox.handler(() => new Promise<void>((r) => setTimeout(r, Math.random() * 3))));
      const keys = ['k1', 'k2', 'k3'];
      const msgs = Array.from({ length: 60 }, (_, i) => message(topic, `o${i}-${s}`, { key: keys[i % 3]!, body: Buffer.from(String(i)) }));
      await t.publisher.publish(msgs);
      await inbox.count(60);
      for (const k of keys) {
        const seq = inbox.deliveries.filter((d) => d.key === k).map((d) => Number(d.body.toString()));
        expect(seq).toEqual([...seq].sort((x, y) => x - y));
      }
    });

    it('close() lets an in-flight handler finish and delivers nothing afterwards', async () => {
      const topic = `close.${s}`;
      const consumer = `c.${s}`;
      await t.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const log: string[] = [];
      const old = new Inbox();
      const sub = await subscribe(
        [topic],
        consumer,
        old.handler(async (d) => {
          log.push(`start ${d.id}`);
          await new Promise((r) => setTimeout(r, 200)); // the handler's own (slow) work
          log.push(`done ${d.id}`);
        }),
      );
      await t.publisher.publish([message(topic, `inflight-${s}`)]);
      await old.has(`inflight-${s}`);
      await sub.close();
      log.push('closed');
      expect(log).toEqual([`start inflight-${s}`, `done inflight-${s}`, 'closed']);
      const later = Array.from({ length: 5 }, (_, i) => `later${i}-${s}`);
      await t.publisher.publish(later.map((id) => message(topic, id)));
      const fresh = new Inbox();
      await subscribe([topic], consumer, fresh.handler());
      await fresh.count(5);
      // The in-flight one was acked (not redelivered); the closed subscription got nothing more.
      expect(fresh.ids().sort()).toEqual([...later].sort());
      expect(old.ids()).toEqual([`inflight-${s}`]);
    });
  });
}
