/**
 * The worker end to end on real Postgres with the memory transport and the order example:
 * (a) the happy and compensation paths end `completed` / `compensated` with the step timeline in
 *     saga_steps, contiguous versions (sagas.version = number of transitions) and compensations in
 *     reverse order (refund before release);
 * (b) a crash after COMMIT and before the ack (every delivery handed over again after it
 *     committed): the inbox absorbs each redelivery, no effect is applied twice;
 * (c) a step timeout that falls due while the only worker is stopped fires exactly once after
 *     restart, with two new workers racing for it: one `timed_out` row per attempt;
 * (d) two workers fed the same and competing replies for the same sagas at once: no lost update;
 * (e) bad input (RELIABILITY §B rows 1-7, 9, 11, 13, 14, 17, 20, 23) lands in dead_letters
 *     with its reason code while valid orders interleaved with it complete, also when a forged
 *     copy of an id shares a batch with the original;
 * (f) a participant handler that throws for one order of a batch: the rest of the batch commits,
 *     the bad one is retried and dead-lettered after retry.maxAttempts;
 * (g) duplicate replies, a reply for an unknown saga, stale and out-of-order replies (row 16:
 *     ignored, no transition), and a late success after the saga gave up (compensated after all).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  OrderShipped,
  PaymentCharged,
  PaymentDeclined,
  PaymentRefunded,
  PaymentUnavailable,
  PlaceOrder,
  StockReleased,
  StockReserved,
  migrateExample,
  orderParticipants,
  orderSaga,
} from '../../examples/order/index.js';
import { makeOrders } from '../../examples/order/run.js';
import { createClient } from '../../src/client.js';
import type { Db } from '../../src/db/db.js';
import { encodeEnvelope, type Envelope } from '../../src/messages/envelope.js';
import { defineMessage, type MessageDefinition } from '../../src/messages/message.js';
import { defineSaga } from '../../src/saga/definition.js';
import { STEP_HEADERS, TERMINAL_STATUSES } from '../../src/saga/state.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import type { OutgoingMessage, Transport } from '../../src/transport/contract.js';
import type { DeadLetterRecord } from '../../src/dead-letters/recorder.js';
import type { SagaflowModule } from '../../src/module.js';
import { defineParticipant, reply, type ParticipantDefinition } from '../../src/participant/definition.js';
import { createWorker, type Role, type SagaChange, type Worker, type WorkerOptions } from '../../src/worker/worker.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { RedeliveringTransport } from '../helpers/redelivering-transport.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

const SKUS = 500;
const RETRY = { maxAttempts: 3, delaysMs: [20] };
const { random } = seededRandom('worker');

let t: TestDb;
let db: Db;
let exampleSchema: string;
let ex: { effects: string };
let orderModule: SagaflowModule;
const running: { worker: Worker; transport: Transport }[] = [];

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_wk', pool: 10 });
  db = t.db;
  exampleSchema = uniqueName('sf_wk_ex');
  await migrateExample(db, exampleSchema, SKUS);
  ex = { effects: `"${exampleSchema}".effects` };
  orderModule = { sagas: [orderSaga], participants: orderParticipants(exampleSchema) };
});

afterEach(async () => {
  for (const r of running.splice(0).reverse()) {
    await r.worker.stop();
    await r.transport.close();
  }
});

afterAll(async () => {
  await db?.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t?.drop();
});

// ---------------------------------------------------------------------------------------------
// helpers

interface Running {
  readonly worker: Worker;
  readonly transport: Transport;
  readonly transitions: SagaChange[];
  readonly deadLetters: DeadLetterRecord[];
  readonly log: ReturnType<typeof captureLogger>;
  handled: number;
}

async function startWorker(
  opts: { module?: SagaflowModule; role?: Role; transport?: Transport; options?: Partial<WorkerOptions>; name?: string } = {},
): Promise<Running> {
  const transport = opts.transport ?? new MemoryTransport();
  const log = captureLogger('debug');
  const worker = createWorker({
    db,
    transport,
    module: opts.module ?? orderModule,
    logger: log.logger,
    options: { schema: t.schema, role: opts.role ?? 'all', retry: RETRY, random, ...opts.options },
  });
  const r: Running = { worker, transport, transitions: [], deadLetters: [], log, handled: 0 };
  worker.events.on('transition', (e) => r.transitions.push(e));
  worker.events.on('deadLetter', (d) => r.deadLetters.push(d));
  worker.events.on('handled', (h) => (r.handled += h.count));
  running.push({ worker, transport });
  await worker.start();
  return r;
}

async function stopWorker(r: Running): Promise<void> {
  const i = running.findIndex((x) => x.worker === r.worker);
  if (i >= 0) running.splice(i, 1);
  await r.worker.stop();
  await r.transport.close();
}

type Order = ReturnType<typeof makeOrders>[number];

function orders(n: number, failAt: Order['failAt'][] = []): Order[] {
  return makeOrders(n, { failEvery: 0, skus: SKUS }).map((o, i) => ({ ...o, failAt: failAt[i] ?? 'none' }));
}

/** The PlaceOrder wire message for an order, with its saga id (the ids are fixed here, so it can be published twice). */
function startMessage(o: Order, opts: { messageId?: string } = {}): { sagaId: string; message: OutgoingMessage } {
  const messageId = opts.messageId ?? randomUUID();
  const sagaId = randomUUID();
  const message = createClient({ schema: t.schema }).build(PlaceOrder, o, { messageId, sagaId, correlationId: o.orderId });
  return { sagaId, message };
}

interface SagaRow {
  id: string;
  status: string;
  version: number;
  reason: string | null;
  data: { orderId: string };
}

async function sagaRows(ids: readonly string[]): Promise<SagaRow[]> {
  const { rows } = await db.query<SagaRow>(`SELECT id, status, version, reason, data FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[]) ORDER BY id`, [
    ids,
  ]);
  return rows;
}

async function waitTerminal(ids: readonly string[], timeoutMs = 30_000): Promise<SagaRow[]> {
  return waitFor(
    `${ids.length} saga(s) to end`,
    () => sagaRows(ids),
    (rows) => rows.length === ids.length && rows.every((r) => TERMINAL_STATUSES.has(r.status as never)),
    { timeoutMs },
  );
}

interface StepRow {
  seq: number;
  step_name: string;
  kind: string;
  attempt: number;
  status: string;
  command_id: string | null;
  command_type: string | null;
  reply_id: string | null;
  reply_type: string | null;
}

async function steps(sagaId: string): Promise<StepRow[]> {
  const { rows } = await db.query<StepRow>(
    `SELECT seq, step_name, kind, attempt, status, command_id, command_type, reply_id, reply_type
     FROM "${t.schema}".saga_steps WHERE saga_id = $1 ORDER BY seq`,
    [sagaId],
  );
  return rows;
}

/** The step row a saga is waiting on (status running), once it exists. */
async function waitingOn(sagaId: string, step: string, attempt = 1, kind: 'forward' | 'compensation' = 'forward'): Promise<StepRow> {
  const rows = await waitFor(
    `saga ${sagaId} to wait on ${step} (${kind}, attempt ${attempt})`,
    () => steps(sagaId),
    (rs) => rs.some((r) => r.step_name === step && r.kind === kind && r.attempt === attempt && r.status === 'running'),
    { timeoutMs: 15_000 },
  );
  return rows.find((r) => r.step_name === step && r.kind === kind && r.attempt === attempt && r.status === 'running')!;
}

/** A participant's reply to the command of step row `row`, as the participant would send it. */
function replyTo(
  sagaId: string,
  row: StepRow,
  message: MessageDefinition,
  payload: unknown,
  over: { id?: string; tenantId?: string; correlationId?: string } = {},
): OutgoingMessage {
  const env: Envelope = {
    id: over.id ?? randomUUID(),
    type: message.type,
    schemaVersion: message.version,
    tenantId: over.tenantId ?? 'default',
    correlationId: over.correlationId ?? 'corr',
    causationId: row.command_id!,
    sagaId,
    occurredAt: new Date().toISOString(),
    headers: {
      [STEP_HEADERS.step]: row.step_name,
      [STEP_HEADERS.phase]: row.kind === 'compensation' ? 'compensation' : 'forward',
      [STEP_HEADERS.attempt]: String(row.attempt),
      [STEP_HEADERS.seq]: String(row.seq),
      [STEP_HEADERS.sagaType]: orderSaga.name,
    },
    payload,
  };
  return { topic: orderSaga.topic, key: sagaId, id: env.id, type: env.type, body: encodeEnvelope(env) };
}

async function effectsOf(orderIds: readonly string[]): Promise<Map<string, string[]>> {
  const { rows } = await db.query<{ order_id: string; kind: string }>(`SELECT order_id, kind FROM ${ex.effects} WHERE order_id = ANY($1) ORDER BY id`, [
    orderIds,
  ]);
  const out = new Map<string, string[]>(orderIds.map((o) => [o, []]));
  for (const r of rows) out.get(r.order_id)!.push(r.kind);
  return out;
}

/** Waits until the transition events of every saga caught up with its row (events follow COMMIT). */
async function eventsFor(all: readonly SagaChange[], sagas: readonly SagaRow[]): Promise<Map<string, number[]>> {
  const versions = () => {
    const m = new Map<string, number[]>(sagas.map((s) => [s.id, []]));
    for (const e of all) m.get(e.sagaId)?.push(e.version);
    return m;
  };
  await waitFor('transition events to catch up with the database', versions, (m) => sagas.every((s) => m.get(s.id)!.length >= s.version), {
    timeoutMs: 5_000,
  });
  return versions();
}

/** Versions 1..n, each exactly once: no transition lost, none applied twice. */
function expectContiguous(versions: Map<string, number[]>, sagas: readonly SagaRow[]): void {
  for (const s of sagas) {
    const vs = [...versions.get(s.id)!].sort((a, b) => a - b);
    expect(vs, `versions of saga ${s.id}`).toEqual(Array.from({ length: s.version }, (_, i) => i + 1));
  }
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const shape = (rs: StepRow[]) => rs.map((r) => `${r.seq}:${r.step_name}/${r.kind}#${r.attempt}=${r.status}`);

// ---------------------------------------------------------------------------------------------

describe('(a) happy path and compensation path', () => {
  it('end completed / compensated with the step timeline, contiguous versions and compensations in reverse order', async () => {
    const w = await startWorker();
    const list = orders(7, ['none', 'none', 'none', 'shipping', 'shipping', 'payment', 'stock']);
    const starts = list.map((o) => startMessage(o));
    await w.transport.publisher.publish(starts.map((s) => s.message));
    const rows = await waitTerminal(starts.map((s) => s.sagaId));
    const byId = new Map(rows.map((r) => [r.id, r]));
    const effects = await effectsOf(list.map((o) => o.orderId));

    const expected = {
      none: {
        status: 'completed',
        version: 4,
        steps: ['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=succeeded', '3:shipOrder/forward#1=succeeded'],
        effects: ['reserve', 'charge', 'ship'],
      },
      shipping: {
        status: 'compensated',
        version: 6,
        steps: [
          '1:reserveStock/forward#1=succeeded',
          '2:chargePayment/forward#1=succeeded',
          '3:shipOrder/forward#1=failed',
          '4:chargePayment/compensation#1=succeeded',
          '5:reserveStock/compensation#1=succeeded',
        ],
        effects: ['reserve', 'charge', 'refund', 'release'],
      },
      payment: {
        status: 'compensated',
        version: 4,
        steps: ['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=failed', '3:reserveStock/compensation#1=succeeded'],
        effects: ['reserve', 'release'],
      },
      stock: { status: 'compensated', version: 2, steps: ['1:reserveStock/forward#1=failed'], effects: [] },
    } as const;

    for (const [i, o] of list.entries()) {
      const e = expected[o.failAt as keyof typeof expected];
      const saga = byId.get(starts[i]!.sagaId)!;
      expect(saga.status, o.failAt).toBe(e.status);
      expect(saga.version, o.failAt).toBe(e.version);
      expect(saga.data.orderId).toBe(o.orderId);
      expect(shape(await steps(saga.id)), o.failAt).toEqual(e.steps);
      // Effects in the order they were applied: the refund comes before the release.
      expect(effects.get(o.orderId), o.failAt).toEqual(e.effects);
    }
    const reasons = rows.filter((r) => r.status === 'compensated').map((r) => r.reason);
    expect(reasons.every((r) => typeof r === 'string' && r.length > 0)).toBe(true);
    expectContiguous(await eventsFor(w.transitions, rows), rows);
  });
});

describe('(b) crash after COMMIT, before the ack', () => {
  it('every redelivered message hits the inbox: no second effect, the duplicate path is taken', async () => {
    const inner = new MemoryTransport();
    const transport = new RedeliveringTransport(inner, (consumer) => consumer !== 'sagaflow.dead-letter-recorder');
    const w = await startWorker({ transport });
    const list = orders(6, ['none', 'none', 'none', 'none', 'shipping', 'payment']);
    const starts = list.map((o) => startMessage(o));
    await transport.publisher.publish(starts.map((s) => s.message));
    const rows = await waitTerminal(starts.map((s) => s.sagaId));
    const versions = await eventsFor(w.transitions, rows);
    expectContiguous(versions, rows);

    // Each saga version is one message the orchestrator applied; each step row is one command a participant handled.
    const orchestratorMessages = rows.reduce((n, r) => n + r.version, 0);
    const commands = (await Promise.all(rows.map((r) => steps(r.id)))).reduce((n, s) => n + s.length, 0);
    await waitFor(
      'every redelivery to be handled',
      () => w.log.count('duplicate delivery ignored'),
      (n) => n === orchestratorMessages + commands,
      { timeoutMs: 10_000 },
    );
    const dupes = w.log.lines.filter((l) => l.msg === 'duplicate delivery ignored');
    expect(dupes.filter((l) => l.consumer === 'orchestrator.order')).toHaveLength(orchestratorMessages);
    expect(dupes.filter((l) => String(l.consumer).startsWith('participant.'))).toHaveLength(commands);
    expect(transport.redelivered).toBeGreaterThanOrEqual(orchestratorMessages + commands);
    // Participants ran each command's business code once, not once per delivery.
    expect(w.handled).toBe(commands);

    const effects = await effectsOf(list.map((o) => o.orderId));
    for (const o of list) {
      const want = { none: ['reserve', 'charge', 'ship'], shipping: ['reserve', 'charge', 'refund', 'release'], payment: ['reserve', 'release'] }[
        o.failAt as 'none' | 'shipping' | 'payment'
      ];
      expect(effects.get(o.orderId), o.orderId).toEqual(want);
    }

    // A publisher retry: the identical start message once more, long after it was processed.
    const before = w.log.count('duplicate delivery ignored');
    await transport.publisher.publish([starts[0]!.message]);
    await waitFor('the repeated start to be ignored', () => w.log.count('duplicate delivery ignored'), (n) => n === before + 2);
    expect((await sagaRows([starts[0]!.sagaId]))[0]!.version).toBe(rows.find((r) => r.id === starts[0]!.sagaId)!.version);
    expect((await effectsOf([list[0]!.orderId])).get(list[0]!.orderId)).toEqual(['reserve', 'charge', 'ship']);
  });
});

describe('(c) timers across a worker restart', () => {
  const TStart = defineMessage({ type: 'Tm.Start', topic: 'tm.start', schema: z.object({ n: z.number().int() }) });
  const Prepare = defineMessage({ type: 'Tm.Prepare', topic: 'tm.prep', schema: z.object({ n: z.number().int() }) });
  const Prepared = defineMessage({ type: 'Tm.Prepared', schema: z.object({}) });
  const Unprepare = defineMessage({ type: 'Tm.Unprepare', topic: 'tm.prep', schema: z.object({ n: z.number().int() }) });
  const Unprepared = defineMessage({ type: 'Tm.Unprepared', schema: z.object({}) });
  const Ask = defineMessage({ type: 'Tm.Ask', topic: 'tm.void', schema: z.object({ n: z.number().int() }) });
  const Answer = defineMessage({ type: 'Tm.Answer', schema: z.object({}) });
  const TIMEOUT_MS = 1500;

  const timeoutSaga = defineSaga({ name: 'timeouts', start: TStart, data: (s) => ({ n: s.n }) })
    .step('prepare', {
      command: Prepare,
      payload: (d) => ({ n: d.n }),
      success: [Prepared],
      compensate: { command: Unprepare, payload: (d) => ({ n: d.n }), success: [Unprepared] },
    })
    // Nobody ever answers Ask: every attempt times out, then `prepare` is compensated.
    .step('ask', { command: Ask, payload: (d) => ({ n: d.n }), success: [Answer], timeoutMs: TIMEOUT_MS, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } })
    .build();

  function timeoutModule(table: string): SagaflowModule {
    const prep = defineParticipant('prep')
      .on(Prepare, () => reply(Prepared, {}), [Prepared])
      .on(
        Unprepare,
        async ({ envelope, tx }) => {
          await tx.query(`INSERT INTO ${table} (saga_id) VALUES ($1)`, [envelope.sagaId]);
          return reply(Unprepared, {});
        },
        [Unprepared],
      )
      .build();
    return { sagas: [timeoutSaga], participants: [prep] };
  }

  /** A transport where Ask is routable (a queue exists) but nobody consumes it. */
  async function transportWithSilentParticipant(): Promise<MemoryTransport> {
    const tr = new MemoryTransport();
    await tr.declare({ topics: [{ name: 'tm.void' }], consumers: [{ consumer: 'nobody', topics: ['tm.void'] }] });
    return tr;
  }

  it('a timeout due while no worker runs fires once after restart, even with two workers racing for it', async () => {
    const table = `"${exampleSchema}".timer_undo`;
    await db.query(`CREATE TABLE ${table} (saga_id uuid NOT NULL)`);
    const mod = timeoutModule(table);
    const client = createClient({ schema: t.schema });

    const w1 = await startWorker({ module: mod, transport: await transportWithSilentParticipant() });
    const K = 4;
    const starts = Array.from({ length: K }, (_, n) => {
      const sagaId = randomUUID();
      return { sagaId, message: client.build(TStart, { n }, { sagaId }) };
    });
    await w1.transport.publisher.publish(starts.map((s) => s.message));
    const ids = starts.map((s) => s.sagaId);
    for (const id of ids) await waitingOn(id, 'ask');
    await stopWorker(w1);
    // Stopped before the timers fell due; they are rows in the database, not in the dead process.
    const pending = await db.query<{ due_in_ms: number }>(
      `SELECT extract(epoch FROM (wake_at - now())) * 1000 AS due_in_ms FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    expect(pending.rows).toHaveLength(K);
    for (const r of pending.rows) expect(Number(r.due_in_ms)).toBeGreaterThan(0);
    expect(w1.worker.stats().timersFired).toBe(0);

    await waitFor(
      'the timers to fall due with no worker running',
      async () => (await db.query<{ due: boolean }>(`SELECT bool_and(wake_at <= now()) AS due FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[])`, [ids])).rows[0]!.due,
      (due) => due === true,
      { timeoutMs: TIMEOUT_MS + 5_000 },
    );

    const [w2, w3] = await Promise.all([
      startWorker({ module: mod, transport: await transportWithSilentParticipant() }),
      startWorker({ module: mod, transport: await transportWithSilentParticipant() }),
    ]);
    const rows = await waitTerminal(ids, 20_000);

    for (const r of rows) {
      expect(r.status).toBe('compensated');
      expect(r.reason).toBe(`step ask failed after 2 attempt(s): no reply within ${TIMEOUT_MS} ms`);
      expect(shape(await steps(r.id))).toEqual([
        '1:prepare/forward#1=succeeded',
        '2:ask/forward#1=timed_out',
        '3:ask/forward#2=timed_out',
        '4:prepare/compensation#1=succeeded',
      ]);
      // start, Prepared, timeout #1, retry timer, timeout #2 (compensate), Unprepared
      expect(r.version).toBe(6);
    }
    // Three timers per saga (two timeouts and one retry back-off), each fired by exactly one worker.
    expect(w2.worker.stats().timersFired + w3.worker.stats().timersFired).toBe(3 * K);
    const versions = await eventsFor([...w1.transitions, ...w2.transitions, ...w3.transitions], rows);
    expectContiguous(versions, rows);
    const undo = await db.query<{ saga_id: string; n: number }>(`SELECT saga_id, count(*)::int AS n FROM ${table} GROUP BY saga_id`);
    expect(undo.rows.map((r) => r.n)).toEqual(Array(K).fill(1));
    console.log(`[timers] fired by worker 2: ${w2.worker.stats().timersFired}, by worker 3: ${w3.worker.stats().timersFired}`);
  });
});

describe('(d) two workers racing on the same sagas', () => {
  it('the same and competing replies fed to both at once: each applied once, versions contiguous', async () => {
    // Orchestrators only: the test answers for the participants (their queues exist, nobody reads them).
    const opts = { role: 'orchestrator' as const, options: { maxBatch: 4 } };
    const [a, b] = await Promise.all([startWorker(opts), startWorker(opts)]);
    const K = 20;
    const list = orders(K);
    const starts = list.map((o) => startMessage(o));
    const ids = starts.map((s) => s.sagaId);
    // The same start messages to both workers.
    await Promise.all([a.transport.publisher.publish(starts.map((s) => s.message)), b.transport.publisher.publish(starts.map((s) => s.message))]);

    const rounds = [
      { step: 'reserveStock', message: StockReserved, payload: (o: Order) => ({ orderId: o.orderId, reservationId: `res-${o.orderId}` }) },
      { step: 'chargePayment', message: PaymentCharged, payload: (o: Order) => ({ orderId: o.orderId, paymentId: `pay-${o.orderId}` }) },
      { step: 'shipOrder', message: OrderShipped, payload: (o: Order) => ({ orderId: o.orderId, trackingNumber: `trk-${o.orderId}` }) },
    ];
    const sent = new Map<string, Set<string>>(); // step row key -> reply ids offered for it
    for (const round of rounds) {
      const toA: OutgoingMessage[] = [];
      const toB: OutgoingMessage[] = [];
      for (const [i, o] of list.entries()) {
        const row = await waitingOn(ids[i]!, round.step);
        // R: one reply, delivered to both workers (a broker duplicate); R2: the participant
        // answered twice with different ids (a retried command). Only one may change the saga.
        const r1 = replyTo(ids[i]!, row, round.message, round.payload(o), { correlationId: o.orderId });
        const r2 = replyTo(ids[i]!, row, round.message, round.payload(o), { correlationId: o.orderId });
        sent.set(`${ids[i]}:${row.seq}`, new Set([r1.id, r2.id]));
        toA.push(r1);
        toB.push(r2);
        if (random() < 0.5) toB.push(r1);
        else toA.push(r2);
      }
      await Promise.all([a.transport.publisher.publish(shuffle(toA)), b.transport.publisher.publish(shuffle(toB))]);
    }

    const rows = await waitTerminal(ids);
    for (const r of rows) {
      expect(r.status).toBe('completed');
      expect(r.version).toBe(4);
      const rs = await steps(r.id);
      expect(shape(rs)).toEqual(['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=succeeded', '3:shipOrder/forward#1=succeeded']);
      for (const s of rs) expect(sent.get(`${r.id}:${s.seq}`)!.has(s.reply_id!)).toBe(true);
    }
    const versions = await eventsFor([...a.transitions, ...b.transitions], rows);
    expectContiguous(versions, rows);
    const appliedByA = a.transitions.filter((e) => ids.includes(e.sagaId)).length;
    const appliedByB = b.transitions.filter((e) => ids.includes(e.sagaId)).length;
    console.log(`[race] transitions applied by worker A: ${appliedByA}, by worker B: ${appliedByB}`);
    expect(appliedByA + appliedByB).toBe(4 * K);
    // Both workers really took part.
    expect(appliedByA).toBeGreaterThan(0);
    expect(appliedByB).toBeGreaterThan(0);
    expect([...a.deadLetters, ...b.deadLetters]).toEqual([]);
  });
});

describe('(e) bad input', () => {
  interface DeadLetterRow {
    message_id: string;
    consumer: string;
    topic: string;
    reason_code: string;
    error: string | null;
    attempts: number | null;
  }

  async function deadLetters(ids: readonly string[]): Promise<Map<string, DeadLetterRow>> {
    const { rows } = await db.query<DeadLetterRow>(
      `SELECT message_id, consumer, topic, reason_code, error, attempts FROM "${t.schema}".dead_letters WHERE message_id = ANY($1)`,
      [ids],
    );
    return new Map(rows.map((r) => [r.message_id, r]));
  }

  function raw(body: Buffer | string, over: Partial<OutgoingMessage> = {}): OutgoingMessage {
    return { topic: orderSaga.topic, key: 'k', id: randomUUID(), type: 'PlaceOrder', body: Buffer.isBuffer(body) ? body : Buffer.from(body), ...over };
  }

  function envelope(over: Record<string, unknown> = {}, drop: string[] = []): Record<string, unknown> {
    const e: Record<string, unknown> = {
      id: randomUUID(),
      type: 'PlaceOrder',
      schemaVersion: 1,
      tenantId: 'default',
      correlationId: 'bad-input',
      occurredAt: new Date().toISOString(),
      payload: { orderId: 'o-bad', customerId: 'c', items: [{ sku: 'sku-1', qty: 1 }], amountCents: 100 },
      ...over,
    };
    for (const k of drop) delete e[k];
    return e;
  }

  const json = (v: unknown) => JSON.stringify(v);

  it('each bad message ends in dead_letters with its reason code; valid orders interleaved with them complete', async () => {
    const w = await startWorker();
    const cases: { label: string; message: OutgoingMessage; reason: string }[] = [
      { label: '1 not UTF-8', message: raw(Buffer.from([0xff, 0xfe, 0xfd, 0x00])), reason: 'DECODE_ERROR' },
      { label: '2 malformed JSON', message: raw('{"id": "x", '), reason: 'MALFORMED_JSON' },
      { label: '3 array', message: raw('[]'), reason: 'INVALID_ENVELOPE' },
      { label: '3 null', message: raw('null'), reason: 'INVALID_ENVELOPE' },
      { label: '3 number', message: raw('42'), reason: 'INVALID_ENVELOPE' },
      { label: '3 string', message: raw('"x"'), reason: 'INVALID_ENVELOPE' },
      ...['id', 'type', 'schemaVersion', 'tenantId', 'correlationId'].map((k) => ({
        label: `4 no ${k}`,
        message: raw(json(envelope({}, [k]))),
        reason: 'INVALID_ENVELOPE',
      })),
      // Row 11 at the envelope level: the envelope is strict, so unknown keys (even these) are refused.
      { label: '11 __proto__ in the envelope', message: raw(json(envelope()).replace(/^\{/, '{"__proto__":{"polluted":"env"},')), reason: 'INVALID_ENVELOPE' },
      { label: '11 constructor in the envelope', message: raw(json({ ...envelope(), constructor: { prototype: { polluted: 'env' } } })), reason: 'INVALID_ENVELOPE' },
      { label: '5 wrong type', message: raw(json(envelope({ payload: { orderId: 'o', customerId: 'c', items: [{ sku: 's', qty: 1 }], amountCents: 'lots' } }))), reason: 'SCHEMA_INVALID' },
      { label: '5 missing field', message: raw(json(envelope({ payload: { orderId: 'o', items: [{ sku: 's', qty: 1 }], amountCents: 1 } }))), reason: 'SCHEMA_INVALID' },
      { label: '5 out of range', message: raw(json(envelope({ payload: { orderId: 'o', customerId: 'c', items: [{ sku: 's', qty: -1 }], amountCents: 1 } }))), reason: 'SCHEMA_INVALID' },
      { label: '6 unknown type', message: raw(json(envelope({ type: 'DropAllTables' }))), reason: 'UNKNOWN_TYPE' },
      { label: '7 major version 2', message: raw(json(envelope({ schemaVersion: 2 }))), reason: 'UNSUPPORTED_VERSION' },
      { label: '9 oversized', message: raw(json(envelope({ payload: { blob: 'x'.repeat(300 * 1024) } }))), reason: 'PAYLOAD_TOO_LARGE' },
      { label: '20 content type', message: raw(json(envelope()), { headers: { 'content-type': 'application/xml' } }), reason: 'UNSUPPORTED_CONTENT_TYPE' },
      { label: 'empty body', message: raw(Buffer.alloc(0)), reason: 'EMPTY_VALUE' },
      // NUL characters end up in the error text; Postgres text cannot store them.
      { label: '2 a NUL body', message: raw('\u0000'), reason: 'MALFORMED_JSON' },
      { label: '6 a type with a NUL', message: raw(json(envelope({ type: 'Drop\u0000Tables' }))), reason: 'UNKNOWN_TYPE' },
      {
        label: '14 reply for an unknown saga',
        message: raw(
          json(
            envelope({
              type: 'StockReserved',
              sagaId: randomUUID(),
              causationId: randomUUID(),
              payload: { orderId: 'o-ghost', reservationId: 'r' },
            }),
          ),
          { type: 'StockReserved' },
        ),
        reason: 'UNKNOWN_SAGA',
      },
    ];

    // Valid orders, among them an SQL-looking order id (row 23) and prototype-pollution keys (row 11).
    const runId = randomUUID().slice(0, 8);
    const sqlOrderId = `${runId}'); DROP TABLE sagas; --`;
    const valid = orders(6).map((o, i) => (i === 0 ? { ...o, orderId: sqlOrderId } : o));
    const protoOrder = valid[1]!;
    const validStarts = valid.map((o) => startMessage(o));
    {
      // The __proto__ / constructor keys must be in the raw JSON text (an object literal would not
      // carry them through JSON.stringify), at the payload's top level and inside an item.
      const env = JSON.parse(validStarts[1]!.message.body.toString()) as Envelope;
      const item = protoOrder.items[0]!;
      const payloadText =
        `{"orderId":${json(protoOrder.orderId)},"customerId":${json(protoOrder.customerId)},` +
        `"items":[{"sku":${json(item.sku)},"qty":${item.qty},"__proto__":{"polluted":"item"}}],` +
        `"amountCents":${protoOrder.amountCents},"failAt":"none",` +
        `"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}`;
      const text = json({ ...env, payload: null }).replace('"payload":null', `"payload":${payloadText}`);
      expect(text).toContain('"__proto__":{"polluted":"yes"}');
      validStarts[1] = { ...validStarts[1]!, message: { ...validStarts[1]!.message, body: Buffer.from(text) } };
    }

    await w.transport.publisher.publish(shuffle([...cases.map((c) => c.message), ...validStarts.map((s) => s.message)]));
    const rows = await waitTerminal(validStarts.map((s) => s.sagaId));
    expect(rows.map((r) => r.status)).toEqual(Array(valid.length).fill('completed'));

    // Second wave, needs the first processed: an id reused with another body (row 13), a reply
    // from another tenant (row 17), and more valid orders interleaved. (Row 16, stale and
    // out-of-order replies, is ignored rather than dead-lettered: see (g).)
    const sqlSagaId = validStarts[0]!.sagaId;
    const sqlSteps = await steps(sqlSagaId);
    const conflict = { ...validStarts[2]!.message, body: Buffer.from(validStarts[2]!.message.body.toString().replace(/"amountCents":\d+/, '"amountCents":1')) };
    const otherTenant = replyTo(sqlSagaId, sqlSteps[0]!, StockReserved, { orderId: sqlOrderId, reservationId: 'r' }, { tenantId: 'tenant-b' });
    const second = [
      { label: '13 id reused with another body', message: conflict, reason: 'ID_CONFLICT' },
      { label: '17 other tenant', message: otherTenant, reason: 'TENANT_MISMATCH' },
    ];
    const more = orders(3).map((o) => startMessage(o));
    await w.transport.publisher.publish(shuffle([...second.map((c) => c.message), ...more.map((s) => s.message)]));
    const moreRows = await waitTerminal(more.map((s) => s.sagaId));
    expect(moreRows.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);

    const all = [...cases, ...second];
    const dl = await waitFor(
      `${all.length} dead letters`,
      () => deadLetters(all.map((c) => c.message.id)),
      (m) => m.size === all.length,
      { timeoutMs: 15_000 },
    );
    for (const c of all) {
      const row = dl.get(c.message.id)!;
      expect(row, c.label).toBeDefined();
      expect(row.consumer, c.label).toBe('orchestrator.order');
      expect(row.topic, c.label).toBe('orders');
      if (c.reason === 'UNKNOWN_SAGA') {
        // Retried (the reply may beat its saga's commit), then dead-lettered. By the transport
        // contract (src/transport/contract.ts) a retryable failure that ran out of attempts is filed
        // as MAX_ATTEMPTS_EXCEEDED, with the cause's code first in the error text.
        expect(row.attempts, c.label).toBe(RETRY.maxAttempts);
        expect(row.reason_code, c.label).toBe('MAX_ATTEMPTS_EXCEEDED');
        expect(row.error, c.label).toMatch(/^UNKNOWN_SAGA: /);
      } else {
        expect(row.reason_code, c.label).toBe(c.reason);
        expect(row.attempts, c.label).toBe(1);
      }
    }
    // Rejected messages leave no inbox claim behind, so a redrive after a fix can process them.
    const inbox = await db.query(`SELECT message_id FROM "${t.schema}".inbox WHERE message_id = ANY($1::uuid[])`, [[otherTenant.id]]);
    expect(inbox.rows).toEqual([]);

    // Row 23: the SQL-looking id round-trips verbatim and did nothing else.
    const sqlSaga = rows.find((r) => r.id === sqlSagaId)!;
    expect(sqlSaga.data.orderId).toBe(sqlOrderId);
    expect((await effectsOf([sqlOrderId])).get(sqlOrderId)).toEqual(['reserve', 'charge', 'ship']);
    const tables = await db.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`"${t.schema}".sagas`]);
    expect(tables.rows[0]!.t).not.toBeNull();
    // Row 11: the pollution keys were stripped, not stored and not applied.
    const protoSaga = rows.find((r) => r.id === validStarts[1]!.sagaId)!;
    const stored = await db.query<{ data: string; state: string }>(`SELECT data::text, state::text FROM "${t.schema}".sagas WHERE id = $1`, [protoSaga.id]);
    expect(stored.rows[0]!.data).not.toMatch(/__proto__|polluted|constructor/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    // The tenant-mismatched reply changed nothing.
    expect((await sagaRows([sqlSagaId]))[0]!.version).toBe(sqlSaga.version);
    // The conflicting message did not replace the original saga.
    expect((await sagaRows([validStarts[2]!.sagaId]))[0]!.data).toMatchObject({ orderId: valid[2]!.orderId, amountCents: valid[2]!.amountCents });
    expect(w.worker.stats().deadLettersRecorded).toBe(all.length);
  });
});

describe('(e) bad input: row 13 inside one batch', () => {
  it('the same id with another body in the same batch is an ID_CONFLICT, not a silently acked duplicate', async () => {
    const w = await startWorker();
    // At the orchestrator: a start message and a forgery with its id, published together (one batch).
    const [o] = orders(1);
    const s = startMessage(o!);
    const forged: OutgoingMessage = { ...s.message, body: Buffer.from(s.message.body.toString().replace(/"amountCents":\d+/, '"amountCents":1')) };
    // At a participant: one command id, two bodies, in one batch. No replyTo: the reply is dropped.
    const chargeId = randomUUID();
    const charge = (amountCents: number): OutgoingMessage => {
      const env: Envelope = {
        id: chargeId,
        type: 'ChargePayment',
        schemaVersion: 1,
        tenantId: 'default',
        correlationId: `direct-${chargeId}`,
        occurredAt: new Date().toISOString(),
        payload: { orderId: `direct-${chargeId.slice(0, 8)}`, customerId: 'c', amountCents, decline: false },
      };
      return { topic: 'payment', key: chargeId, id: chargeId, type: 'ChargePayment', body: encodeEnvelope(env) };
    };
    await w.transport.publisher.publish([s.message, forged, charge(100), charge(1)]);

    const [saga] = await waitTerminal([s.sagaId]);
    expect(saga).toMatchObject({ status: 'completed', data: { amountCents: o!.amountCents } });
    const dl = await waitFor(
      'both forgeries to be dead-lettered',
      async () =>
        (
          await db.query<{ consumer: string; message_id: string; reason_code: string }>(
            `SELECT consumer, message_id, reason_code FROM "${t.schema}".dead_letters WHERE message_id = ANY($1) ORDER BY consumer`,
            [[s.message.id, chargeId]],
          )
        ).rows,
      (rows) => rows.length === 2,
      { timeoutMs: 10_000 },
    );
    expect(dl).toEqual([
      { consumer: 'orchestrator.order', message_id: s.message.id, reason_code: 'ID_CONFLICT' },
      { consumer: 'participant.payment', message_id: chargeId, reason_code: 'ID_CONFLICT' },
    ]);
    const charged = await effectsOf([`direct-${chargeId.slice(0, 8)}`]);
    expect(charged.get(`direct-${chargeId.slice(0, 8)}`)).toEqual(['charge']);
  });
});

describe('(f) a participant handler that throws for one order of a batch', () => {
  it('the others in the batch commit; the bad one is retried and dead-lettered after retry.maxAttempts', async () => {
    const list = orders(12);
    const bad = list[5]!;
    const calls = new Map<string, number>();
    // The example's payment participant, with a handler that crashes on one order.
    const participants = orderParticipants(exampleSchema).map((p): ParticipantDefinition => {
      if (p.name !== 'payment') return p;
      const handlers = new Map(p.handlers);
      const charge = handlers.get('ChargePayment')!;
      handlers.set('ChargePayment', {
        message: charge.message,
        handle: (ctx) => {
          for (const item of ctx.items) {
            const orderId = (item.payload as { orderId: string }).orderId;
            calls.set(orderId, (calls.get(orderId) ?? 0) + 1);
            if (orderId === bad.orderId) throw new Error('payment handler crashed');
          }
          return charge.handle(ctx);
        },
      });
      return { ...p, handlers };
    });
    const w = await startWorker({ module: { sagas: [orderSaga], participants } });
    const starts = list.map((o) => startMessage(o));
    await w.transport.publisher.publish(starts.map((s) => s.message));
    const goodIds = starts.filter((_, i) => i !== 5).map((s) => s.sagaId);
    const rows = await waitTerminal(goodIds);
    expect(rows.map((r) => r.status)).toEqual(Array(11).fill('completed'));

    const dl = await waitFor(
      'the crashing command to be dead-lettered',
      async () =>
        (
          await db.query<{ reason_code: string; error: string; attempts: number; msg_type: string }>(
            `SELECT reason_code, error, attempts, msg_type FROM "${t.schema}".dead_letters WHERE consumer = 'participant.payment' AND msg_key = $1`,
            [starts[5]!.sagaId],
          )
        ).rows,
      (r) => r.length === 1,
      { timeoutMs: 10_000 },
    );
    expect(dl[0]).toMatchObject({ reason_code: 'MAX_ATTEMPTS_EXCEEDED', attempts: RETRY.maxAttempts, msg_type: 'ChargePayment' });
    expect(dl[0]!.error).toMatch(/^HANDLER_ERROR: payment handler crashed/);
    // The crash was inside a batch with other orders; the batch was split and the others committed.
    const isolated = w.log.lines.filter((l) => l.msg === 'batch failed; isolating its messages one by one');
    expect(isolated.length).toBeGreaterThanOrEqual(1);
    expect(Math.max(...isolated.map((l) => Number(l.size)))).toBeGreaterThan(1);
    // Every delivery of the bad command ran the handler (the first one twice: in the batch, then alone).
    expect(calls.get(bad.orderId)).toBeGreaterThanOrEqual(RETRY.maxAttempts);
    for (const o of list) if (o !== bad) expect(calls.get(o.orderId), o.orderId).toBeGreaterThanOrEqual(1);

    const effects = await effectsOf(list.map((o) => o.orderId));
    for (const o of list) expect(effects.get(o.orderId), o.orderId).toEqual(o === bad ? ['reserve'] : ['reserve', 'charge', 'ship']);
    // The bad order's saga still waits for its payment (its step timeout decides what happens next).
    const badSaga = (await sagaRows([starts[5]!.sagaId]))[0]!;
    expect(badSaga).toMatchObject({ status: 'running', version: 2 });
  });
});

describe('(g) duplicate, unknown, stale and late replies', () => {
  it('duplicates are absorbed, a stale reply is ignored, an unknown saga is dead-lettered after retries', async () => {
    const w = await startWorker({ role: 'orchestrator' });
    const [o] = orders(1);
    const s = startMessage(o!);
    await w.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    // Row 16, out of order: a reply for a step the saga has not reached (no such command was sent).
    // It is dead-lettered as OUT_OF_ORDER for a human, with no transition.
    const early = replyTo(s.sagaId, { ...reserve, step_name: 'shipOrder', seq: 3, command_id: randomUUID() }, OrderShipped, {
      orderId: o!.orderId,
      trackingNumber: 't-early',
    });
    await w.transport.publisher.publish([early]);
    await waitFor('the early reply to be processed', () => w.log.lines.find((l) => l.messageId === early.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === early.id && l.code)!.code).toBe('OUT_OF_ORDER');
    await waitFor('the early reply in the dead letters', () => w.deadLetters.find((d) => d.messageId === early.id), (d) => d?.reasonCode === 'OUT_OF_ORDER');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(1);
    const stockReserved = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' });
    await w.transport.publisher.publish([stockReserved]);
    const charge1 = await waitingOn(s.sagaId, 'chargePayment', 1);
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(2);

    // Row 12: the same reply again (same id): the inbox absorbs it.
    await w.transport.publisher.publish([stockReserved]);
    await waitFor('the duplicate to be ignored', () => w.log.lines.some((l) => l.msg === 'duplicate delivery ignored' && l.messageId === stockReserved.id), Boolean);
    // The same answer with a new id (the participant answered twice): the engine ignores it.
    const again = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' });
    await w.transport.publisher.publish([again]);
    await waitFor('the second answer to be processed', () => w.log.lines.find((l) => l.messageId === again.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === again.id && l.code)!.code).toBe('DUPLICATE_REPLY');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(2);

    // Row 16: attempt 1 of chargePayment fails (retryable), attempt 2 starts; then attempt 1's late success arrives: stale.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge1, PaymentUnavailable, { orderId: o!.orderId, reason: 'unavailable: gateway' })]);
    const charge2 = await waitingOn(s.sagaId, 'chargePayment', 2);
    expect(charge2.command_id).not.toBe(charge1.command_id);
    const versionBefore = (await sagaRows([s.sagaId]))[0]!.version;
    const stale = replyTo(s.sagaId, charge1, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-stale' });
    await w.transport.publisher.publish([stale]);
    await waitFor('the stale reply to be processed', () => w.log.lines.find((l) => l.messageId === stale.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === stale.id && l.code)!.code).toBe('STALE_REPLY');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(versionBefore);

    // The current attempt's reply still counts.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge2, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-2' })]);
    const ship = await waitingOn(s.sagaId, 'shipOrder');
    await w.transport.publisher.publish([replyTo(s.sagaId, ship, OrderShipped, { orderId: o!.orderId, trackingNumber: 't' })]);
    const [done] = await waitTerminal([s.sagaId]);
    expect(done!.status).toBe('completed');
    expect(shape(await steps(s.sagaId))).toEqual([
      '1:reserveStock/forward#1=succeeded',
      '2:chargePayment/forward#1=failed',
      '3:chargePayment/forward#2=succeeded',
      '4:shipOrder/forward#1=succeeded',
    ]);
    expect((await steps(s.sagaId))[2]!.reply_type).toBe('PaymentCharged');
    expectContiguous(await eventsFor(w.transitions, [done!]), [done!]);

    // Row 14: a reply for a saga that does not exist: retried, then dead-lettered.
    const ghostSaga = randomUUID();
    const ghost = replyTo(ghostSaga, { ...reserve, command_id: randomUUID() }, StockReserved, { orderId: 'ghost', reservationId: 'r' });
    await w.transport.publisher.publish([ghost]);
    const dl = await waitFor(
      'the unknown-saga reply to be dead-lettered',
      async () =>
        (await db.query<{ reason_code: string; error: string; attempts: number }>(`SELECT reason_code, error, attempts FROM "${t.schema}".dead_letters WHERE message_id = $1`, [ghost.id]))
          .rows,
      (r) => r.length === 1,
      { timeoutMs: 10_000 },
    );
    expect(dl[0]!.attempts).toBe(RETRY.maxAttempts);
    expect(dl[0]!.reason_code).toBe('MAX_ATTEMPTS_EXCEEDED');
    expect(dl[0]!.error).toMatch(/^UNKNOWN_SAGA: /);
    expect(w.log.lines.filter((l) => l.messageId === ghost.id && l.code === 'UNKNOWN_SAGA')).toHaveLength(RETRY.maxAttempts);
    expect((await sagaRows([ghostSaga])).length).toBe(0);
  });

  it('a late success after the saga gave up is compensated after all', async () => {
    const w = await startWorker({ role: 'orchestrator' });
    const [o] = orders(1);
    const s = startMessage(o!);
    await w.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    await w.transport.publisher.publish([replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' })]);
    const charge = await waitingOn(s.sagaId, 'chargePayment');
    // The payment service says no: the saga gives up and undoes the reservation.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge, PaymentDeclined, { orderId: o!.orderId, reason: 'card declined' })]);
    const release = await waitingOn(s.sagaId, 'reserveStock', 1, 'compensation');
    await w.transport.publisher.publish([replyTo(s.sagaId, release, StockReleased, { orderId: o!.orderId })]);
    const [gaveUp] = await waitTerminal([s.sagaId]);
    expect(gaveUp).toMatchObject({ status: 'compensated', version: 4 });

    // ...but the charge did go through after all, and its success arrives late.
    const late = replyTo(s.sagaId, charge, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-late' });
    await w.transport.publisher.publish([late]);
    const refund = await waitingOn(s.sagaId, 'chargePayment', 1, 'compensation');
    expect(refund.command_type).toBe('RefundPayment');
    expect(w.transitions.find((e) => e.sagaId === s.sagaId && e.code === 'LATE_REPLY')).toMatchObject({ status: 'compensating', version: 5 });
    await w.transport.publisher.publish([replyTo(s.sagaId, refund, PaymentRefunded, { orderId: o!.orderId })]);
    const final = await waitFor('the saga to be compensated again', () => sagaRows([s.sagaId]), (r) => r[0]?.status === 'compensated' && r[0].version === 6);
    expect(shape(await steps(s.sagaId))).toEqual([
      '1:reserveStock/forward#1=succeeded',
      '2:chargePayment/forward#1=failed',
      '3:reserveStock/compensation#1=succeeded',
      '4:chargePayment/compensation#1=succeeded',
    ]);
    expectContiguous(await eventsFor(w.transitions, final), final);
    // The late reply is recorded as processed: a redelivery of it changes nothing.
    await w.transport.publisher.publish([late]);
    await waitFor('the redelivered late reply to be ignored', () => w.log.lines.some((l) => l.msg === 'duplicate delivery ignored' && l.messageId === late.id), Boolean);
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(6);
  });
});
