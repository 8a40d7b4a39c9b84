/**
 * Definition versions side by side, on real Postgres and RabbitMQ:
 * - a v1 saga in flight when a worker with only v2 runs: the saga is left untouched (status,
 *   version, steps, timer), marked `waiting for definition order v1`, its reply kept (parked), its
 *   due timer neither fired nor spinning, one warning; then a worker with both versions finishes
 *   it on v1, its parked reply first, while new sagas start on v2;
 * - `sagas migrate` (the operation behind it): refused without a mapping and for a saga in a step
 *   the mapping does not cover, a dry run changes nothing, an accepted one moves the saga under its
 *   row lock and a v2-only worker finishes it; every outcome is audited;
 * - `history export` writes the recorded inputs, and they replay against v1 but not against an
 *   incompatible change.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { StockReserved, orderParticipants, orderSaga } from '../../../examples/order/index.js';
import { historyExport } from '../../../src/cli/commands/versions.js';
import type { CliContext } from '../../../src/cli/context.js';
import { RefusedError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import type { SagaflowModule } from '../../../src/module.js';
import { SagaMigrations } from '../../../src/ops/migrate-ops.js';
import type { SagaMigration } from '../../../src/saga/migration.js';
import { createRabbitMqTransport, type RabbitMqTransport } from '../../../src/transport/rabbitmq/transport.js';
import { HistoryDivergence, readHistory, replayHistory } from '../../../src/testing/replay.js';
import { waitFor } from '../../helpers/wait.js';
import { deleteDeclared } from '../../helpers/rabbit-cleanup.js';
import { shape, workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_ver');
const { startWorker, stopWorker, orders, startMessage, waitTerminal, steps, waitingOn, replyTo } = suite;

const url = inject('services').amqpUrl;
const namespace = `sfver-${randomBytes(3).toString('hex')}`;
const declared = { queues: new Set<string>(), exchanges: new Set<string>() };

async function rabbit(): Promise<RabbitMqTransport> {
  return createRabbitMqTransport({ url, namespace, logger: silentLogger(), reconnect: { initialDelayMs: 50, maxDelayMs: 1_000 } });
}

async function start(module: SagaflowModule, role: 'orchestrator' | 'all') {
  const transport = await rabbit();
  const r = await startWorker({ module, role, transport });
  const names = transport.declaredNames();
  for (const q of names.queues) declared.queues.add(q);
  for (const x of names.exchanges) declared.exchanges.add(x);
  return r;
}

afterAll(async () => {
  await deleteDeclared(url, declared);
});

/** v2: v1 plus a local confirmation step at the end (visible in the step rows of v2 sagas only). */
const orderV2 = orderSaga.derive({ version: 2 }).localStep('confirmOrder', { run: () => ({ confirmed: true }) }).build();
const fullMapping: SagaMigration = { saga: 'order', from: 1, to: 2, steps: { reserveStock: 'reserveStock', chargePayment: 'chargePayment', shipOrder: 'shipOrder' } };

interface Row {
  status: string;
  reason: string | null;
  version: number;
  definition_version: number;
  wake_at: Date | null;
}

async function row(id: string): Promise<Row> {
  const { rows } = await suite.db.query<Row>(`SELECT status, reason, version, definition_version, wake_at FROM "${suite.t.schema}".sagas WHERE id = $1`, [id]);
  return rows[0]!;
}

async function parked(id: string): Promise<string[]> {
  const { rows } = await suite.db.query<{ message_id: string }>(`SELECT message_id::text FROM "${suite.t.schema}".saga_pending_inputs WHERE saga_id = $1 ORDER BY seq`, [id]);
  return rows.map((r) => r.message_id);
}

const participants = () => orderParticipants(suite.exampleSchema);

describe('definition versions side by side (Postgres + RabbitMQ)', () => {
  let finishedOnV1 = '';

  it('a v2-only worker leaves a v1 saga untouched and keeps its reply; a worker with both versions finishes it on v1', async () => {
    const a = await start({ sagas: [orderSaga] }, 'orchestrator');
    const [o] = orders(1);
    const s = startMessage(o!);
    await a.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    await stopWorker(a);
    // Its step timeout falls due while only the v2 worker runs: that worker must neither fire it nor spin on it.
    await suite.db.query(`UPDATE "${suite.t.schema}".sagas SET wake_at = now() - interval '1 second' WHERE id = $1`, [s.sagaId]);
    const before = await row(s.sagaId);

    const b = await start({ sagas: [orderV2] }, 'orchestrator');
    // A reply from another tenant first: kept like any other, it is rejected only once v1 is here.
    const forged = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-x' }, { tenantId: 'intruder' });
    await b.transport.publisher.publish([forged]);
    await waitFor('the forged reply to be parked', () => parked(s.sagaId), (ids) => ids.length === 1);
    const reply = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-v1' });
    await b.transport.publisher.publish([reply]);
    await waitFor('the reply to be parked', () => parked(s.sagaId), (ids) => ids.length === 2);
    // The same reply redelivered is a duplicate (inbox), not a third parked input.
    await b.transport.publisher.publish([reply]);
    await waitFor('the redelivery to be absorbed', () => b.log.count('duplicate delivery ignored'), (n) => n >= 1);
    expect(await parked(s.sagaId)).toEqual([forged.id, reply.id]);

    const waiting = await row(s.sagaId);
    expect(waiting).toEqual({ ...before, reason: 'waiting for definition order v1' });
    expect(shape(await steps(s.sagaId))).toEqual(['1:reserveStock/forward#1=running']);
    expect(b.worker.stats().timersFired).toBe(0);
    expect(b.transitions).toEqual([]);
    expect(b.deadLetters).toEqual([]);
    expect(b.log.count(/^waiting for definition order v1: this worker does not have it/)).toBe(1);
    await stopWorker(b);

    const c = await start({ sagas: [orderSaga, orderV2], participants: participants() }, 'all');
    const [done] = await waitTerminal([s.sagaId]);
    expect(done!.status).toBe('completed');
    const after = await row(s.sagaId);
    expect(after.definition_version).toBe(1);
    expect(after.reason).toBeNull();
    expect(await parked(s.sagaId)).toEqual([]);
    const rows = await steps(s.sagaId);
    // Finished on v1: its parked reply moved it on (no timeout fired), and v2's extra step never ran.
    expect(shape(rows)).toEqual(['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=succeeded', '3:shipOrder/forward#1=succeeded']);
    expect(rows[0]!.reply_id).toBe(reply.id);
    // The forged one could not go back to the broker (it was acked when kept): it is a dead letter now.
    const { rows: dead } = await suite.db.query<{ message_id: string; reason_code: string; consumer: string }>(
      `SELECT message_id, reason_code, consumer FROM "${suite.t.schema}".dead_letters WHERE message_id = $1`,
      [forged.id],
    );
    expect(dead).toEqual([{ message_id: forged.id, reason_code: 'TENANT_MISMATCH', consumer: 'orchestrator.order' }]);

    // New sagas start on the newest version.
    const [o2] = orders(1);
    const s2 = startMessage(o2!);
    await c.transport.publisher.publish([s2.message]);
    await waitTerminal([s2.sagaId]);
    expect((await row(s2.sagaId)).definition_version).toBe(2);
    expect(shape(await steps(s2.sagaId)).at(-1)).toBe('4:confirmOrder/local#1=succeeded');
    finishedOnV1 = s.sagaId;
  });

  it('history export writes the recorded inputs; they replay on v1 and diverge on an incompatible change', async () => {
    expect(finishedOnV1).not.toBe('');
    const dir = mkdtempSync(join(tmpdir(), 'sagaflow-history-'));
    try {
      const file = join(dir, 'saga.json');
      const ctx = { config: { schema: suite.t.schema }, db: () => suite.db, logger: silentLogger() } as unknown as CliContext;
      await historyExport(ctx, finishedOnV1, { out: file });
      const h = readHistory(file);
      expect(h.inputs.map((i) => i.input.kind)).toEqual(['start', 'reply', 'reply', 'reply']);
      expect(h.inputs.map((i) => i.version)).toEqual([1, 2, 3, 4]);
      expect(replayHistory(orderSaga, h).final!.status).toBe('completed');
      const incompatible = { ...orderV2, version: 1 } as typeof orderV2;
      expect(() => replayHistory(incompatible, h)).toThrow(HistoryDivergence);
      expect(() => replayHistory(incompatible, h)).toThrow(/diverged at input #4 of 4, reply OrderShipped/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sagas migrate: refused without a mapping or outside its coverage, a dry run changes nothing, accepted moves the saga to v2', async () => {
    const a = await start({ sagas: [orderSaga] }, 'orchestrator');
    const [o] = orders(1);
    const s = startMessage(o!);
    await a.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    await a.transport.publisher.publish([replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-m' })]);
    await waitingOn(s.sagaId, 'chargePayment');
    await stopWorker(a);
    const actor = { name: 'test:migrate' };
    const ops = (migrations: SagaMigration[]) =>
      new SagaMigrations({ db: suite.db, schema: suite.t.schema, sagas: [orderSaga, orderV2], migrations, logger: silentLogger() });
    const mine = <T extends { sagaId: string }>(rs: T[]) => rs.filter((r) => r.sagaId === s.sagaId);
    const before = await row(s.sagaId);

    await expect(ops([]).run({ type: 'order', from: 1, to: 2 }, actor)).rejects.toThrow(RefusedError);
    await expect(ops([]).run({ type: 'order', from: 1, to: 2 }, actor)).rejects.toThrow(/exports no migration order v1 -> v2/);
    const partial = mine(await ops([{ ...fullMapping, steps: { reserveStock: 'reserveStock' } }]).run({ type: 'order', from: 1, to: 2 }, actor));
    expect(partial).toEqual([expect.objectContaining({ outcome: 'refused', message: expect.stringMatching(/chargePayment, which the migration order v1 -> v2 does not cover/) })]);
    const dry = mine(await ops([fullMapping]).run({ type: 'order', from: 1, to: 2, dryRun: true }, actor));
    expect(dry).toEqual([expect.objectContaining({ outcome: 'dry-run', at: 'chargePayment (forward)' })]);
    expect(await row(s.sagaId)).toEqual(before);

    const done = mine(await ops([fullMapping]).run({ type: 'order', from: 1, to: 2, reason: 'retire v1' }, actor));
    expect(done).toEqual([expect.objectContaining({ outcome: 'accepted', at: 'chargePayment (forward)' })]);
    const moved = await row(s.sagaId);
    expect(moved).toMatchObject({ definition_version: 2, version: before.version + 1, status: 'running' });
    const { rows: audit } = await suite.db.query<{ target_id: string; outcome: string }>(
      `SELECT target_id, outcome FROM "${suite.t.schema}".audit_log WHERE action = 'migrate' ORDER BY id`,
    );
    expect(audit.map((r) => `${r.target_id === s.sagaId ? 'saga' : r.target_id}:${r.outcome}`)).toEqual([
      'order v1 -> v2:refused',
      'order v1 -> v2:refused',
      'saga:refused',
      'saga:dry-run',
      'saga:accepted',
    ]);

    // A worker with only v2 now drives it: the reply to the payment command v1 sent, then v2's extra step.
    await start({ sagas: [orderV2], participants: participants() }, 'all');
    const [end] = await waitTerminal([s.sagaId]);
    expect(end!.status).toBe('completed');
    expect(shape(await steps(s.sagaId)).at(-1)).toBe('4:confirmOrder/local#1=succeeded');
  });
});
