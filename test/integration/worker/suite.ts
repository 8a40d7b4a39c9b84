/**
 * Shared set-up of the worker suites (test/integration/worker/*.test.ts): each test file calls
 * `workerSuite(prefix)` once, which gives it its own Postgres schema and example schema, stops the
 * workers a test started, and returns the helpers below bound to that file's database.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { PlaceOrder, migrateExample, orderParticipants, orderSaga } from '../../../examples/order/index.js';
import { makeOrders } from '../../../examples/order/run.js';
import { createClient } from '../../../src/client.js';
import type { Db } from '../../../src/db/db.js';
import type { DeadLetterRecord } from '../../../src/dead-letters/recorder.js';
import type { Envelope } from '../../../src/messages/envelope.js';
import { encodeEnvelope } from '../../../src/messages/wire.js';
import type { MessageDefinition } from '../../../src/messages/message.js';
import type { SagaflowModule } from '../../../src/module.js';
import { STEP_HEADERS, TERMINAL_STATUSES } from '../../../src/saga/state.js';
import type { OutgoingMessage, Transport } from '../../../src/transport/contract.js';
import { MemoryTransport } from '../../../src/transport/memory.js';
import { createWorker, type Role, type SagaChange, type Worker, type WorkerOptions } from '../../../src/worker/worker.js';
import { captureLogger } from '../../helpers/capture-logger.js';
import { createTestDb, uniqueName, type TestDb } from '../../helpers/db.js';
import { seededRandom } from '../../helpers/seed.js';
import { waitFor } from '../../helpers/wait.js';

export const SKUS = 500;
export const RETRY = { maxAttempts: 3, delaysMs: [20] };

export interface Running {
  readonly worker: Worker;
  readonly transport: Transport;
  readonly transitions: SagaChange[];
  readonly deadLetters: DeadLetterRecord[];
  readonly log: ReturnType<typeof captureLogger>;
  handled: number;
}

export type Order = ReturnType<typeof makeOrders>[number];

export interface SagaRow {
  id: string;
  status: string;
  version: number;
  reason: string | null;
  data: { orderId: string };
}

export interface StepRow {
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

export const shape = (rs: StepRow[]) => rs.map((r) => `${r.seq}:${r.step_name}/${r.kind}#${r.attempt}=${r.status}`);

export function workerSuite(prefix: string) {
  const { random } = seededRandom(prefix);
  let t!: TestDb;
  let db!: Db;
  let exampleSchema!: string;
  let ex!: { effects: string };
  let orderModule!: SagaflowModule;
  const running: { worker: Worker; transport: Transport }[] = [];

  beforeAll(async () => {
    t = await createTestDb({ prefix, pool: 10 });
    db = t.db;
    exampleSchema = uniqueName(`${prefix}_ex`);
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
    over: { id?: string; tenantId?: string; correlationId?: string; saga?: { readonly name: string; readonly topic: string } } = {},
  ): OutgoingMessage {
    const saga = over.saga ?? orderSaga;
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
        [STEP_HEADERS.sagaType]: saga.name,
      },
      payload,
    };
    return { topic: saga.topic, key: sagaId, id: env.id, type: env.type, body: encodeEnvelope(env) };
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

  return {
    get db() {
      return db;
    },
    get t() {
      return t;
    },
    get ex() {
      return ex;
    },
    get exampleSchema() {
      return exampleSchema;
    },
    get orderModule() {
      return orderModule;
    },
    random,
    startWorker,
    stopWorker,
    orders,
    startMessage,
    sagaRows,
    waitTerminal,
    steps,
    waitingOn,
    replyTo,
    effectsOf,
    eventsFor,
    expectContiguous,
    shuffle,
  };
}
