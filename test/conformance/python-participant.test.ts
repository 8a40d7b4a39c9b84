/**
 * Conformance: a participant no part of sagaflow wrote. test/conformance/payment_participant.py is
 * the order example's payment service in Python (Debian's python3-pika, /usr/bin/python3), written
 * from docs/wire-protocol.md ALONE: it replaces the example's TypeScript payment participant while a
 * sagaflow worker runs the orchestrator and the other participants (`--exclude-participants
 * payment`), on RabbitMQ.
 *
 * 100 orders, every 10th failing at shipping (the example's rule): 90 complete, 10 are compensated
 * (the Python service refunds them). The Python side misbehaves as networks make services do: it
 * publishes every 7th reply twice, the copy re-serialised (new `time`, other key order, other
 * whitespace: the same meaning), and "loses" the ack of every 5th command after replying, so the
 * broker delivers that command again and the service answers it again from its own inbox (the
 * stored reply, byte for byte). The orchestrator's inbox must recognise every repeated reply: no
 * saga moves twice, no dead letter (no ID_CONFLICT), every effect once (the service's ledger is
 * judged by the same checker as the TypeScript run). A command the service refuses is dead-lettered
 * by the queue and recorded by sagaflow.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeOrders, publishOrders } from '../../examples/order/run.js';
import type { Db } from '../../src/db/db.js';
import { exampleTables } from '../../examples/order/participants.js';
import type { Transport } from '../../src/transport/contract.js';
import { checkInvariants, cleanupRabbit, dropSchemas, e2eEnv, prepare, rabbitQueueDepths, testTransport, unhandledErrors, waitAllTerminal, waitOutboxDrained, WorkerProcess, type E2EEnv } from '../e2e/harness.js';
import { waitFor } from '../helpers/wait.js';
import { JsonLinesProcess, PYTHON, missingPika, warnSkipped } from './foreign-clients.js';

const execFileAsync = promisify(execFile);

/** What the Python service reports after each command (its "payment-progress" line). */
interface ServiceCounts {
  readonly commands: number;
  readonly applied: number;
  readonly repeated: number;
  readonly duplicatesSent: number;
  readonly requeued: number;
  readonly rejected: number;
}
const SERVICE = join(new URL('.', import.meta.url).pathname, 'payment_participant.py');
const ORDERS = 100;
const noPika = missingPika();
if (noPika) warnSkipped('the Python (pika) participant conformance test', noPika);

describe.skipIf(noPika !== undefined)('a Python participant (pika) written from docs/wire-protocol.md replaces the payment participant on RabbitMQ', () => {
  let env: E2EEnv;
  let db: Db;
  let transport: Transport;
  let worker: WorkerProcess;
  let service: JsonLinesProcess;
  const ledger = () => join(env.logDir, 'payment.sqlite3');

  beforeAll(async () => {
    env = e2eEnv('rabbitmq');
    db = await prepare(env);
    worker = new WorkerProcess(env, 'all', 'worker-without-payment', {}, ['--exclude-participants', 'payment']);
    // The worker first: it declares the whole module's topology, the payment queue included.
    await worker.start();
    service = new JsonLinesProcess(PYTHON, [SERVICE], {
      name: 'payment-python',
      logDir: env.logDir,
      env: {
        PATH: process.env.PATH,
        AMQP_URL: env.amqpUrl,
        SAGAFLOW_NAMESPACE: env.namespace,
        PAYMENT_DB: ledger(),
        PAYMENT_DUPLICATE_EVERY: '7',
        PAYMENT_REQUEUE_EVERY: '5',
      },
    });
    await service.ready('payment-ready');
    transport = await testTransport(env);
  });

  afterAll(async () => {
    await service?.stop();
    const code = await worker?.stop();
    await transport?.close();
    if (env) await cleanupRabbit(env).catch(() => undefined);
    if (db) {
      await dropSchemas(db, env);
      await db.close();
    }
    expect(code === 0 || code === null).toBe(true);
  });

  it('100 orders: 90 completed, 10 compensated (refunded by the Python service), repeated replies recognised, every effect once', async () => {
    const orders = makeOrders(ORDERS, { runId: env.schema, failEvery: 10 });
    await publishOrders(transport.publisher, orders, { schema: env.schema });
    await waitAllTerminal(db, env, ORDERS, 180_000);
    await waitOutboxDrained(db, env);

    // Every ChargePayment and RefundPayment applied, every command it "lost" the ack of answered
    // again, and every repeated reply consumed by the orchestrator.
    const commands = ORDERS + ORDERS / 10;
    const last = await waitFor(
      'the Python service to have answered every command and every redelivery',
      () => service.events().findLast((e) => e.event === 'payment-progress') as ServiceCounts | undefined,
      (p) => p !== undefined && p.applied >= commands && p.repeated === p.requeued,
      { timeoutMs: 60_000 },
    );
    await waitFor('every queue to be empty', () => rabbitQueueDepths(env), (d) => Object.values(d).every((m) => m === 0), { timeoutMs: 30_000 });
    console.log(`[conformance] Python payment service: ${JSON.stringify(last)}`);
    expect(last!.rejected).toBe(0);
    // The repeats happened (or the test proves nothing about them).
    expect(last!.duplicatesSent).toBeGreaterThanOrEqual(10);
    expect(last!.requeued).toBeGreaterThanOrEqual(10);
    await waitOutboxDrained(db, env);

    // The service's ledger joins the example's effects table: one checker for both languages.
    const effects = await pythonEffects(ledger());
    const t = exampleTables(env.exampleSchema);
    await db.query(`INSERT INTO ${t.effects} (order_id, kind) SELECT * FROM unnest($1::text[], $2::text[])`, [effects.map((e) => e[0]), effects.map((e) => e[1])]);
    expect(await checkInvariants(db, env, { sagas: ORDERS, completed: 90, compensated: 10 })).toEqual([]);
    expect(unhandledErrors([worker])).toEqual([]);
  });

  it('a command the Python service refuses (no replyto) is dead-lettered by the queue and recorded as REJECTED; the service then stops cleanly', async () => {
    const id = randomUUID();
    const event = { specversion: '1.0', id, source: '/conformance/test', type: 'ChargePayment', data: { orderId: 'o-refused', customerId: 'c', amountCents: 1, decline: false } };
    await transport.publisher.publish([{ topic: 'payment', key: id, id, type: 'ChargePayment', body: Buffer.from(JSON.stringify(event)) }]);
    const dead = await waitFor(
      'the refused command in the dead letters',
      async () => (await db.query<{ message_id: string; reason_code: string; consumer: string }>(`SELECT message_id, reason_code, consumer FROM "${env.schema}".dead_letters`)).rows,
      (rows) => rows.length > 0,
      { timeoutMs: 30_000 },
    );
    expect(dead).toEqual([{ message_id: id, reason_code: 'REJECTED', consumer: 'participant.payment' }]);
    expect(await service.stop(), service.log()).toBe(0);
    expect(service.events().at(-1)).toMatchObject({ event: 'payment-stopped', rejected: 1 });
  });
});

if (noPika) describe('Python participant (pika)', () => it.skip(`SKIPPED, cannot run here: ${noPika}`, () => {}));

/** The service's effects ledger, `[orderId, kind]` per applied effect, as the service itself reports it. */
async function pythonEffects(file: string): Promise<[string, string][]> {
  const { stdout } = await execFileAsync(PYTHON, [SERVICE, 'effects', file], { timeout: 30_000 });
  return JSON.parse(stdout) as [string, string][];
}
