/**
 * `sagaflow/testing`: run your module's sagas in a test, with real, faked or scripted participants,
 * against the memory transport and a real PostgreSQL (an embedded one unless you give a URL), and
 * move time forward to fire step timeouts and retry back-offs without waiting. See the README,
 * "Testing your sagas".
 *
 *   const kit = await createSagaTestKit({ module: myModule });
 *   kit.script(ChargePayment, replyWith(PaymentDeclined, { orderId: 'o-1', reason: 'no' }));
 *   const saga = await kit.start(orderSaga, { ... });
 *   await saga.waitFor('compensated');
 *   expect(await saga.commands()).toEqual(['ReserveStock', 'ChargePayment', 'ReleaseStock']);
 *   await kit.close();
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '../client.js';
import { createDb, quoteSchema, type Db } from '../db/db.js';
import { migrate } from '../db/migrate.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../local/embedded-postgres.js';
import { silentLogger, type Logger } from '../log.js';
import type { InputOf, MessageDefinition, PayloadOf } from '../messages/message.js';
import type { SagaflowModule } from '../module.js';
import { notify } from '../ops/saga-ops.js';
import { OutboxStore } from '../outbox/store.js';
import type { SagaDefinition } from '../saga/definition.js';
import { TERMINAL_STATUSES, type SagaStatus } from '../saga/state.js';
import { SagaStore, type StepHistoryRow } from '../saga/store.js';
import { MemoryTransport } from '../transport/memory.js';
import { createWorker, type Worker } from '../worker/worker.js';
import { VirtualClock } from './clock.js';
import { ScriptBook, type DeliveredCommand, type Script } from './scripts.js';
import { mulberry32 } from './random.js';

// History replay (`sagaflow history export` files against a changed definition) belongs to the same kit.
export { replayHistory, replayHistoryFiles, readHistory, HistoryDivergence, HISTORY_FORMAT, type SagaHistory, type HistoryEntry, type ReplayResult } from './replay.js';

export { inTurn, noReply, replyWith, throws, type DeliveredCommand, type Script, type ScriptedCommand } from './scripts.js';
export { reply } from '../participant/definition.js';

export interface SagaTestKitOptions {
  readonly module: SagaflowModule;
  /**
   * 'real' (default): the module's participants handle commands, except the command types a test
   * scripts. 'scripted': only scripts answer; a command with no script gets no reply.
   */
  readonly participants?: 'real' | 'scripted';
  /** A PostgreSQL to use instead of the embedded one (default: env SAGAFLOW_TEST_DATABASE_URL, else embedded). */
  readonly databaseUrl?: string;
  /** Schema for sagaflow's tables (default: a fresh sagaflow_test_<random>, dropped at close). */
  readonly schema?: string;
  /** Seed of the retry jitter (default 1): the same test waits the same virtual delays every run. */
  readonly seed?: number;
  /** Deliveries of a command whose participant throws, before it is dead-lettered (default 3). */
  readonly deliveryAttempts?: number;
  readonly logger?: Logger;
}

export interface StepEntry {
  readonly step: string;
  readonly kind: string;
  readonly attempt: number;
  readonly status: string;
  readonly command: string | null;
  readonly reply: string | null;
  readonly error: string | null;
}

export interface SagaHandle {
  readonly id: string;
  status(): Promise<SagaStatus | undefined>;
  /** Resolves once the saga has `status` (default: any final status); rejects after `timeoutMs` real time (default 30 s). */
  waitFor(status?: SagaStatus | 'finished', opts?: { timeoutMs?: number }): Promise<SagaStatus>;
  /** Every step attempt in order, forward and compensation, as stored. */
  timeline(): Promise<StepEntry[]>;
  /** Command types the saga sent, in order (retries repeat their command). */
  commands(): Promise<string[]>;
  /** Command types of the compensations it ran, in order. */
  compensations(): Promise<string[]>;
  /** The saga's reason (why it failed or was compensated), if any. */
  reason(): Promise<string | null>;
}

export interface SagaTestKit {
  readonly db: Db;
  readonly schema: string;
  /** Where the database came from: an embedded server's URL or the one given. */
  readonly databaseUrl: string;
  /** Answers `command` with `script` from now on (until reset): replyWith(...), noReply(), throws(), inTurn(...) or your own. */
  script<M extends MessageDefinition>(command: M, script: Script<PayloadOf<M>>): void;
  /** Starts a saga with its start message, as a client would; resolves once the saga exists. */
  start<S extends SagaDefinition<any, any>>(saga: S, payload: InputOf<S['start']>): Promise<SagaHandle>;
  saga(id: string): SagaHandle;
  /**
   * Lets what is under way settle, moves virtual time forward by `ms`, fires what fell due (step
   * timeouts, retry back-offs) and resolves once that has settled too. Nothing waits in real time.
   */
  advance(ms: number): Promise<void>;
  /** Resolves once no message is queued, in flight, awaiting redelivery or waiting in the outbox. */
  settle(timeoutMs?: number): Promise<void>;
  /** How far virtual time is ahead of the database clock. */
  readonly elapsedMs: number;
  /** Commands the participants (real or scripted) received, in order. */
  delivered(): readonly DeliveredCommand[];
  /** Dead letters recorded so far: message type and reason code. */
  deadLetters(): Promise<{ type: string | null; reason: string }[]>;
  /** Forgets scripts and delivered commands (sagas already started are left alone). */
  reset(): void;
  close(): Promise<void>;
}

// One embedded server per process, shared by every kit in it and stopped when the last one closes.
let shared: { server: Promise<EmbeddedPostgres>; users: number } | undefined;

function acquireEmbedded(): Promise<EmbeddedPostgres> {
  // A throwaway database: speed over surviving a crash of the server (durable: false).
  shared ??= { server: startEmbeddedPostgres({ durable: false }), users: 0 };
  shared.users++;
  return shared.server;
}

async function releaseEmbedded(): Promise<void> {
  if (!shared || --shared.users > 0) return;
  const s = shared;
  shared = undefined;
  await (await s.server).stop();
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`sagaflow/testing: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export async function createSagaTestKit(opts: SagaTestKitOptions): Promise<SagaTestKit> {
  const given = opts.databaseUrl ?? process.env.SAGAFLOW_TEST_DATABASE_URL;
  const embedded = given ? undefined : await acquireEmbedded();
  const databaseUrl = given ?? embedded!.url;
  const schema = opts.schema ?? `sagaflow_test_${randomBytes(5).toString('hex')}`;
  const ownSchema = opts.schema === undefined;
  const logger = opts.logger ?? silentLogger();
  const db = createDb({ connectionString: databaseUrl, max: 4, logger, applicationName: `sagaflow-testing-${schema}` });
  const clock = new VirtualClock(db.pool);
  const book = new ScriptBook();
  const transport = new MemoryTransport({ retryDelayFactor: 0 });
  const sagaStore = new SagaStore(schema);
  const channel = new OutboxStore(schema).channel;
  const q = quoteSchema(schema);
  let worker: Worker | undefined;
  try {
    await migrate(db, schema);
    await opts.module.migrate?.(db);
    worker = createWorker({
      db,
      transport,
      module: { ...opts.module, participants: book.participants(opts.module, opts.participants ?? 'real') },
      logger,
      options: {
        schema,
        retry: { maxAttempts: opts.deliveryAttempts ?? 3, delaysMs: [0] },
        outboxGraceMs: 0,
        random: mulberry32(opts.seed ?? 1),
        // Timers are fired by advance(); the safety-net polls would only add queries.
        relay: { fallbackPollMs: 0, idlePollMs: 0 },
        timers: { fallbackPollMs: 0, idlePollMs: 0 },
      },
    });
    await worker.start();
  } catch (err) {
    await db.close();
    if (embedded) await releaseEmbedded();
    throw err;
  }
  const running = worker;
  const client = createClient({ schema, publisher: transport.publisher });

  /**
   * Quiet means: nothing queued, in flight or awaiting redelivery in the memory transport, and no
   * outbox row waiting to be published, twice in a row (a commit publishes right after it).
   */
  const settle = async (timeoutMs = 30_000): Promise<void> => {
    let quietRounds = 0;
    await until('the sagas and participants to settle', timeoutMs, async () => {
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${q}.outbox WHERE parked_at IS NULL`);
      quietRounds = transport.idle() && rows[0]!.n === 0 ? quietRounds + 1 : 0;
      return quietRounds >= 2 ? true : undefined;
    });
  };

  const handle = (id: string): SagaHandle => ({
    id,
    async status() {
      return (await sagaStore.get(db, id))?.status;
    },
    async waitFor(status = 'finished', o = {}) {
      return until(`saga ${id} to be ${status}`, o.timeoutMs ?? 30_000, async () => {
        const s = (await sagaStore.get(db, id))?.status;
        if (s === undefined) return undefined;
        if (status === 'finished' ? TERMINAL_STATUSES.has(s) : s === status) return s;
        if (TERMINAL_STATUSES.has(s) && s !== status) throw new Error(`saga ${id} ended ${s}, not ${status}: ${(await sagaStore.get(db, id))?.reason ?? ''}`);
        return undefined;
      });
    },
    async timeline() {
      return (await sagaStore.history(db, id)).map(toEntry);
    },
    async commands() {
      return (await sagaStore.history(db, id)).flatMap((s) => (s.commandType ? [s.commandType] : []));
    },
    async compensations() {
      return (await sagaStore.history(db, id)).flatMap((s) => (s.kind === 'compensation' && s.commandType ? [s.commandType] : []));
    },
    async reason() {
      return (await sagaStore.get(db, id))?.reason ?? null;
    },
  });

  return {
    db,
    schema,
    databaseUrl,
    get elapsedMs() {
      return clock.offsetMs;
    },
    script: (command, script) => book.set(command, script),
    async start(saga, payload) {
      const { sagaId } = await client.startSaga(saga, payload);
      // Started means the saga exists: its start message was consumed and its first step sent.
      await until(`saga ${sagaId} to start`, 30_000, async () => ((await sagaStore.get(db, sagaId)) ? true : undefined));
      return handle(sagaId);
    },
    saga: handle,
    settle,
    async advance(ms) {
      await settle();
      clock.advance(ms);
      // The same wake-up an operator action sends: the worker's timer service looks at once.
      await notify(db, channel);
      await until(`timers due within ${clock.offsetMs} ms of virtual time to fire`, 30_000, async () => {
        const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${q}.sagas WHERE wake_at <= ${sagaStore.now}`);
        return rows[0]!.n === 0 ? true : undefined;
      });
      await settle();
    },
    delivered: () => book.delivered,
    async deadLetters() {
      const { rows } = await db.query<{ type: string | null; reason: string }>(`SELECT msg_type AS type, reason_code AS reason FROM ${q}.dead_letters ORDER BY id`);
      return rows;
    },
    reset: () => book.clear(),
    async close() {
      await running.stop();
      await transport.close();
      try {
        if (ownSchema) await db.query(`DROP SCHEMA IF EXISTS ${q} CASCADE`);
      } finally {
        await db.close();
        if (embedded) await releaseEmbedded();
      }
    },
  };
}

function toEntry(s: StepHistoryRow): StepEntry {
  return { step: s.step, kind: s.kind, attempt: s.attempt, status: s.status, command: s.commandType, reply: s.replyType, error: s.error };
}
