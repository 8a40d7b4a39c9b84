/**
 * Every delivered message ends in exactly ONE explicit outcome - applied, a duplicate of a message
 * already applied, or a dead letter with a reason code - and none vanishes, for each consumer kind
 * (the orchestrator's start/reply consumer and a participant's command consumer), against real
 * Postgres. fast-check draws the messages, how each id is spelt (lower, UPPER, mIxEd case), the
 * wire format of each copy (CloudEvents structured or binary, legacy), re-serialisations (key
 * order, time), copies with another meaning under the same id, NUL characters, and the batches.
 * It is the test that would have caught upper-case ids being acked as duplicates and dropped.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PlaceOrder, ReserveStock, migrateExample, orderParticipants, orderSaga } from '../../examples/order/index.js';
import { PermanentError } from '../../src/errors.js';
import { InboxStore } from '../../src/inbox/store.js';
import { silentLogger } from '../../src/log.js';
import { toCloudEvent } from '../../src/messages/cloudevents.js';
import type { Envelope } from '../../src/messages/envelope.js';
import { encodeMessage } from '../../src/messages/wire.js';
import { OutboxDispatcher } from '../../src/outbox/dispatcher.js';
import { OutboxStore } from '../../src/outbox/store.js';
import { sagaIdFor } from '../../src/saga/engine.js';
import { SagaStore } from '../../src/saga/store.js';
import { decodeDelivery, type Inbound } from '../../src/transaction/decode.js';
import type { MessageOutcome } from '../../src/transaction/outcome.js';
import { participantWork } from '../../src/transaction/participant-work.js';
import { runTransactional, type Work } from '../../src/transaction/run.js';
import { sagaWork } from '../../src/transaction/saga-work.js';
import { transitionSettings } from '../../src/transaction/transitions.js';
import { MessageRegistry } from '../../src/messages/message.js';
import type { Delivery } from '../../src/transport/contract.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { RecordingPublisher } from '../helpers/recording-publisher.js';
import { seededRandom } from '../helpers/seed.js';

let t: TestDb;
const exampleSchema = uniqueName('sf_outcomes_ex');
const logger = silentLogger();
const { seed } = seededRandom('message outcomes');

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_outcomes' });
  await migrateExample(t.db, exampleSchema, 50);
});
afterAll(async () => {
  await t.db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t.drop();
});

type Spelling = 'lower' | 'upper' | 'mixed';
type Format = 'structured' | 'binary-kafka' | 'binary-amqp' | 'legacy';
interface Copy {
  readonly msg: number;
  readonly spelling: Spelling;
  readonly format: Format;
  /** Another meaning under the same id (different data): must be ID_CONFLICT, never a duplicate. */
  readonly altered: boolean;
  readonly flipKeys: boolean;
}

const spell = (id: string, s: Spelling): string =>
  s === 'lower' ? id : s === 'upper' ? id.toUpperCase() : [...id].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('');

function reorder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reorder);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v).sort().reverse().map((k) => [k, reorder((v as Record<string, unknown>)[k])]));
}

/** One copy on the wire: the envelope with its id spelt and serialised as the copy says. */
function deliver(env: Envelope, c: Copy): Delivery {
  const e: Envelope = { ...env, id: spell(env.id, c.spelling), sagaId: env.sagaId && spell(env.sagaId, c.spelling), occurredAt: new Date().toISOString() };
  let body: Buffer;
  let headers: Record<string, string>;
  if (c.format === 'legacy' || c.format === 'structured') {
    const enc = encodeMessage(e, c.format === 'legacy' ? 'legacy' : 'cloudevents');
    body = c.flipKeys ? Buffer.from(JSON.stringify(reorder(JSON.parse(enc.body.toString())))) : enc.body;
    headers = { ...enc.headers };
  } else {
    const { data, ...attrs } = toCloudEvent(e);
    const prefix = c.format === 'binary-kafka' ? 'ce_' : 'cloudEvents_';
    headers = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`${prefix}${k}`, String(v)]));
    headers['content-type'] = 'application/json';
    body = Buffer.from(JSON.stringify(c.flipKeys ? reorder(data) : data));
  }
  return { topic: 'x', key: undefined, id: undefined, type: env.type, body, headers, attempt: 1, redelivered: false };
}

const copyArb = (messages: number): fc.Arbitrary<Copy> =>
  fc.record({
    msg: fc.nat({ max: messages - 1 }),
    spelling: fc.constantFrom<Spelling>('lower', 'upper', 'mixed'),
    format: fc.constantFrom<Format>('structured', 'binary-kafka', 'binary-amqp', 'legacy'),
    altered: fc.nat({ max: 3 }).map((x) => x === 0),
    flipKeys: fc.boolean(),
  });

type Outcome = MessageOutcome | { kind: 'failed'; error: PermanentError };

/** Decode (a PermanentError is a dead letter), then the consumer's transaction in batches. */
async function consume(work: Work<Inbound>, registry: MessageRegistry, deliveries: readonly Delivery[], batchSizes: readonly number[]): Promise<Outcome[]> {
  const publisher = new RecordingPublisher();
  const dispatcher = new OutboxDispatcher({ publisher, store: new OutboxStore(t.schema), db: t.db, logger, onLeftBehind: () => {} });
  const out: Outcome[] = new Array(deliveries.length);
  let i = 0;
  let b = 0;
  while (i < deliveries.length) {
    const size = Math.max(1, batchSizes[b++ % batchSizes.length] ?? 1);
    const slice = deliveries.slice(i, i + size).map((d, k) => ({ d, at: i + k }));
    const items: { item: Inbound; at: number }[] = [];
    for (const { d, at } of slice) {
      try {
        items.push({ item: decodeDelivery(d, registry, 256 * 1024), at });
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        out[at] = { kind: 'failed', error: err };
      }
    }
    if (items.length > 0) {
      const outcomes = await runTransactional({ db: t.db, dispatcher, logger }, items.map((x) => x.item), work);
      expect(outcomes).toHaveLength(items.length);
      outcomes.forEach((o, k) => (out[items[k]!.at] = o));
    }
    i += size;
  }
  await dispatcher.drain();
  return out;
}

function codeOf(o: Outcome): string | undefined {
  return o.kind === 'failed' ? (o.error as { code?: string }).code : undefined;
}

/**
 * The oracle: per canonical id, the first copy that is decodable decides it (applied; or a dead
 * letter if it is bad); every later copy with the same meaning is a duplicate, another meaning is
 * ID_CONFLICT. A copy with a NUL is UNSTORABLE_TEXT whenever it comes.
 */
function expected(copies: readonly Copy[], nul: (c: Copy) => boolean): string[] {
  const first = new Map<number, boolean>(); // msg -> altered flag of the applied copy
  return copies.map((c) => {
    if (nul(c)) return 'dead:UNSTORABLE_TEXT';
    const f = first.get(c.msg);
    if (f === undefined) {
      first.set(c.msg, c.altered);
      return 'applied';
    }
    return f === c.altered ? 'duplicate' : 'dead:ID_CONFLICT';
  });
}

const describeOutcome = (o: Outcome): string => (o.kind === 'failed' ? `dead:${codeOf(o)}` : o.kind);

describe('every delivered message ends in exactly one explicit outcome', () => {
  it('the orchestrator (start messages)', async () => {
    const sagas = new SagaStore(t.schema);
    const work = sagaWork({
      def: orderSaga,
      sagas,
      inbox: new InboxStore(t.schema),
      outbox: new OutboxStore(t.schema),
      graceMs: 60_000,
      transitions: transitionSettings({ events: 'none' }),
      logger,
      onApplied: () => {},
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(fc.constant(n), fc.array(copyArb(n), { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }), fc.nat({ max: n }))),
        async ([n, copies, batches, nulAt]) => {
          const ids = Array.from({ length: n }, () => randomUUID());
          const env = (msg: number, altered: boolean, nul: boolean): Envelope => ({
            id: ids[msg]!,
            type: PlaceOrder.type,
            schemaVersion: 1,
            tenantId: 'default',
            correlationId: `c-${msg}`,
            occurredAt: '',
            payload: { orderId: `o-${ids[msg]}`, customerId: nul ? 'c\u0000' : 'c', items: [{ sku: 'sku-1', qty: 1 }], amountCents: altered ? 2 : 1, failAt: 'none' },
          });
          // The message drawn as `nulAt` (when < n) carries a NUL in every copy.
          const nul = (c: Copy) => c.msg === nulAt;
          const deliveries = copies.map((c) => deliver(env(c.msg, c.altered, nul(c)), c));
          const outcomes = await consume(work, orderSaga.registry, deliveries, batches);
          expect(outcomes.map(describeOutcome)).toEqual(expected(copies, nul));
          // Nothing vanished: every applied start made its saga, with the data of the applied copy.
          const applied = new Set(copies.filter((_, i) => outcomes[i]!.kind === 'applied').map((c) => c.msg));
          const rows = await t.db.query<{ id: string }>(`SELECT id FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[])`, [ids.map((id) => sagaIdFor(id))]);
          expect(new Set(rows.rows.map((r) => r.id))).toEqual(new Set([...applied].map((m) => sagaIdFor(ids[m]!))));
        },
      ),
      { seed, numRuns: 40 },
    );
  });

  it('a participant (commands)', async () => {
    const stock = orderParticipants(exampleSchema).find((p) => p.name === 'stock')!;
    const work = participantWork({
      participant: stock,
      wireFormat: 'cloudevents',
      inbox: new InboxStore(t.schema),
      outbox: new OutboxStore(t.schema),
      sagas: new SagaStore(t.schema),
      graceMs: 60_000,
      logger,
      onHandled: () => {},
    });
    const registry = new MessageRegistry([...stock.handlers.values()].map((h) => h.message));
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(fc.constant(n), fc.array(copyArb(n), { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }), fc.nat({ max: n }))),
        async ([n, copies, batches, nulAt]) => {
          const ids = Array.from({ length: n }, () => randomUUID());
          const sagaIds = ids.map(() => randomUUID());
          const causes = ids.map(() => randomUUID());
          const orderId = (msg: number) => `o-${ids[msg]}`;
          const env = (msg: number, altered: boolean, nul: boolean): Envelope => ({
            id: ids[msg]!,
            type: ReserveStock.type,
            schemaVersion: 1,
            tenantId: 'default',
            correlationId: `c-${msg}`,
            causationId: causes[msg]!,
            sagaId: sagaIds[msg]!,
            replyTo: orderSaga.topic,
            occurredAt: '',
            headers: { 'sagaflow-step': 'reserveStock', 'sagaflow-phase': 'forward', 'sagaflow-attempt': '1' },
            payload: { orderId: nul ? `o\u0000${msg}` : orderId(msg), items: [{ sku: 'sku-1', qty: altered ? 2 : 1 }], reject: false },
          });
          const nul = (c: Copy) => c.msg === nulAt;
          const deliveries = copies.map((c) => deliver(env(c.msg, c.altered, nul(c)), c));
          const outcomes = await consume(work, registry, deliveries, batches);
          expect(outcomes.map(describeOutcome)).toEqual(expected(copies, nul));
          // Nothing vanished and nothing was done twice: every applied command reserved exactly once.
          const applied = [...new Set(copies.filter((_, i) => outcomes[i]!.kind === 'applied').map((c) => c.msg))];
          const effects = await t.db.query<{ order_id: string }>(`SELECT order_id FROM "${exampleSchema}".effects WHERE order_id = ANY($1)`, [ids.map((_, m) => orderId(m))]);
          expect(effects.rows.map((r) => r.order_id).sort()).toEqual(applied.map((m) => orderId(m)).sort());
        },
      ),
      { seed, numRuns: 40 },
    );
  });
});
