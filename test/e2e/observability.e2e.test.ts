/**
 * Observability against real backends, with worker PROCESSES on RabbitMQ (the orchestrator and the
 * participants apart, as in production):
 * - a real Prometheus (Debian's package, started by scripts/observability) scrapes both workers'
 *   /metrics during the run, and its HTTP API then answers the completed and compensated counts the
 *   saga table has;
 * - a real Zipkin server receives both processes' spans through OpenTelemetry's Zipkin exporter
 *   (SAGAFLOW_OTEL=1 + OTEL_EXPORTER_ZIPKIN_ENDPOINT), and one compensated saga's trace, fetched by
 *   its id (the saga id) through Zipkin's API, holds every step, the failure and each compensation,
 *   from both services;
 * - a worker whose broker connection is cut (its AMQP traffic runs through a loopback forwarder
 *   the test closes) answers /readyz 503 within seconds and 200 again once the broker is back,
 *   without a restart.
 * A backend that cannot be installed here skips its test with the reason in its name.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusServer } from '../../scripts/observability/prometheus.js';
import { startZipkin, type ZipkinServer, type ZipkinSpan } from '../../scripts/observability/zipkin.js';
import type { Db } from '../../src/db/db.js';
import { sagaTraceId } from '../../src/observability/tracing.js';
import type { Transport } from '../../src/transport/contract.js';
import { prometheusUnavailable, zipkinUnavailable } from '../helpers/observability-backends.js';
import { closedPort, forward } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import {
  cleanupRabbit,
  dropSchemas,
  e2eEnv,
  placeOrders,
  prepare,
  statusCounts,
  testTransport,
  unhandledErrors,
  waitAllTerminal,
  waitOutboxDrained,
  WorkerProcess,
  type E2EEnv,
} from './harness.js';

const log = (m: string): void => console.log(`[observability e2e] ${m}`);
const noPrometheus = prometheusUnavailable(log);
const noZipkin = await zipkinUnavailable(log);
for (const [name, reason] of [['Prometheus', noPrometheus], ['Zipkin', noZipkin]] as const) {
  if (reason) console.warn(`[observability e2e] WARNING: ${name} cannot be installed here, its test is SKIPPED: ${reason}`);
}

interface Run {
  env: E2EEnv;
  db: Db;
  transport?: Transport;
  workers: WorkerProcess[];
  close: (() => Promise<void>)[];
}
let current: Run | undefined;

afterEach(async () => {
  const run = current;
  current = undefined;
  if (!run) return;
  const codes = await Promise.all(run.workers.map((w) => w.stop()));
  for (const c of run.close.reverse()) await c().catch(() => undefined);
  await run.transport?.close();
  await cleanupRabbit(run.env).catch(() => undefined);
  await dropSchemas(run.db, run.env);
  await run.db.close();
  expect(codes.every((c) => c === 0 || c === null)).toBe(true);
});

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe.skipIf(noPrometheus !== undefined && noZipkin !== undefined)('a saga run watched by Prometheus and Zipkin', () => {
  let prometheus: PrometheusServer | undefined;
  let zipkin: ZipkinServer | undefined;
  const ports = { orchestrator: 0, participants: 0 };

  beforeAll(async () => {
    ports.orchestrator = await closedPort();
    ports.participants = await closedPort();
    const jobs = [
      { job: 'sagaflow-orchestrator', targets: [`127.0.0.1:${ports.orchestrator}`] },
      { job: 'sagaflow-participants', targets: [`127.0.0.1:${ports.participants}`] },
    ];
    [prometheus, zipkin] = await Promise.all([
      noPrometheus ? undefined : startPrometheus({ scrapeJobs: jobs, scrapeIntervalMs: 500, log }),
      noZipkin ? undefined : startZipkin({ log }),
    ]);
  }, 400_000);

  afterAll(async () => {
    await prometheus?.stop();
    await zipkin?.stop();
  });

  it('Prometheus reads the saga table’s completed and compensated counts; Zipkin holds a compensated saga’s whole trace from both processes', async () => {
    const otel: Record<string, string> = zipkin
      ? { SAGAFLOW_OTEL: '1', OTEL_EXPORTER_ZIPKIN_ENDPOINT: zipkin.spansUrl, OTEL_BSP_SCHEDULE_DELAY: '200' }
      : {};
    const env = e2eEnv('rabbitmq', otel);
    const db = await prepare(env);
    const run: Run = { env, db, workers: [], close: [] };
    current = run;
    run.workers.push(
      new WorkerProcess(env, 'orchestrator', 'orchestrator', { SAGAFLOW_HEALTH_PORT: String(ports.orchestrator) }),
      new WorkerProcess(env, 'participants', 'participants', { SAGAFLOW_HEALTH_PORT: String(ports.participants) }),
    );
    await Promise.all(run.workers.map((w) => w.start()));
    run.transport = await testTransport(env);

    const n = 60;
    await placeOrders(env, run.transport, n, { failEvery: 10 });
    const counts = await waitAllTerminal(db, env, n);
    await waitOutboxDrained(db, env);
    expect(counts).toMatchObject({ completed: 54, compensated: 6, failed: 0 });
    expect(unhandledErrors(run.workers)).toEqual([]);

    if (prometheus) {
      const p = prometheus;
      await p.waitForTargetsUp(60_000);
      const one = async (q: string) => {
        const s = await p.query(q);
        return s.length === 1 ? s[0]!.value : undefined;
      };
      for (const outcome of ['completed', 'compensated'] as const) {
        const promql = `sum(sagaflow_sagas_finished_total{job="sagaflow-orchestrator",saga_type="order",outcome="${outcome}"})`;
        const v = await waitFor(`Prometheus' ${outcome} count`, () => one(promql), (x) => x === counts[outcome], { timeoutMs: 30_000, intervalMs: 250 });
        log(`${promql} = ${v} (saga table: ${counts[outcome]})`);
      }
      expect(await one('sum(sagaflow_sagas_started_total{job="sagaflow-orchestrator"})')).toBe(n);
      // The participants' worker counts the commands it handled (3 per completed order, more with compensations).
      const handled = await waitFor('the participants’ handled count', () => one('sum(sagaflow_messages_handled_total{job="sagaflow-participants",outcome="ok"})'), (x) => (x ?? 0) >= 54 * 3, {
        timeoutMs: 30_000,
        intervalMs: 250,
      });
      log(`participants handled ok: ${handled}`);
      expect(await one('sagaflow_outbox_backlog_messages{job="sagaflow-orchestrator"}')).toBeGreaterThanOrEqual(0);
    }

    if (zipkin) {
      const z = zipkin;
      const { rows } = await db.query<{ id: string }>(`SELECT id FROM "${env.schema}".sagas WHERE status = 'compensated' ORDER BY id LIMIT 1`);
      const sagaId = rows[0]!.id;
      const traceId = sagaTraceId(sagaId);
      const wanted = [
        'order start',
        'step reservestock',
        'stock handle reservestock',
        'step chargepayment',
        'payment handle chargepayment',
        'step shiporder',
        'shipping handle shiporder',
        'order reply shippingfailed',
        'compensate chargepayment',
        'payment handle refundpayment',
        'order reply paymentrefunded',
        'compensate reservestock',
        'stock handle releasestock',
        'order reply stockreleased',
      ];
      const name = (s: ZipkinSpan) => (s.name ?? '').toLowerCase();
      const spans = await waitFor(`saga ${sagaId}'s trace in Zipkin`, () => z.trace(traceId), (t) => wanted.every((w) => (t ?? []).some((s) => name(s) === w)), {
        timeoutMs: 60_000,
        intervalMs: 500,
      }).catch(async (err: Error) => {
        const got = ((await z.trace(traceId)) ?? []).map(name);
        throw new Error(`${err.message}; Zipkin has: ${got.join(', ')}`);
      });
      const services = new Set(spans!.map((s) => s.localEndpoint?.serviceName));
      expect(services).toEqual(new Set(['sagaflow-orchestrator', 'sagaflow-participants']));
      const failure = spans!.find((s) => name(s) === 'order reply shippingfailed')!;
      expect(failure.tags?.['otel.status_code']).toBe('ERROR');
      expect(failure.tags?.['sagaflow.saga.id']).toBe(sagaId);
      expect(failure.annotations?.map((a) => a.value)).toEqual(expect.arrayContaining(['step failed', 'compensation started']));
      // Parent links cross the process boundary both ways.
      const byId = new Map(spans!.map((s) => [s.id, s]));
      const handled = spans!.find((s) => name(s) === 'shipping handle shiporder')!;
      expect(name(byId.get(handled.parentId!)!)).toBe('step shiporder');
      expect(byId.get(failure.parentId!)).toBe(handled);
      // The text dump of the README: the trace as Zipkin has it, as a tree (each hop under the span that sent it).
      const t0 = Math.min(...spans!.map((s) => s.timestamp ?? 0));
      const children = new Map<string | undefined, ZipkinSpan[]>();
      for (const s of spans!) {
        const parent = s.parentId !== undefined && byId.has(s.parentId) ? s.parentId : undefined;
        children.set(parent, [...(children.get(parent) ?? []), s]);
      }
      const dump: string[] = [];
      const walk = (parent: string | undefined, depth: number): void => {
        for (const s of [...(children.get(parent) ?? [])].sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0))) {
          const at = `${(((s.timestamp ?? t0) - t0) / 1000).toFixed(0)} ms`.padStart(8);
          const notes = (s.annotations ?? []).map((a) => a.value).join(', ');
          const flag = s.tags?.['otel.status_code'] === 'ERROR' ? ' [ERROR]' : '';
          dump.push(`${at}  ${(s.localEndpoint?.serviceName ?? '').padEnd(22)} ${' '.repeat(depth)}${s.name ?? ''}${flag}${notes ? `  {${notes}}` : ''}`);
          walk(s.id, depth + 1);
        }
      };
      walk(undefined, 0);
      log(`trace ${traceId} (saga ${sagaId}), ${spans!.length} spans:\n${dump.join('\n')}`);
    }
    expect(await statusCounts(db, env)).toMatchObject(counts);
  }, 400_000);
});

if (noPrometheus) describe('Prometheus', () => it.skip(`SKIPPED, cannot be installed here: ${noPrometheus}`, () => {}));
if (noZipkin) describe('Zipkin', () => it.skip(`SKIPPED, cannot be installed here: ${noZipkin}`, () => {}));

describe('worker readiness follows its broker connection', () => {
  it('/readyz turns 503 when the broker connection is cut and 200 again once it is back, without a restart', async () => {
    const amqpPort = await closedPort();
    const healthPort = await closedPort();
    const env = e2eEnv('rabbitmq');
    const db = await prepare(env);
    const run: Run = { env, db, workers: [], close: [] };
    current = run;
    const real = new URL(env.amqpUrl);
    const target = { host: real.hostname, port: Number(real.port || 5672) };
    let proxy = await forward(amqpPort, target);
    run.close.push(() => proxy.close());
    const viaProxy = new URL(env.amqpUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(amqpPort);
    const worker = new WorkerProcess(env, 'all', 'worker', { AMQP_URL: viaProxy.toString(), SAGAFLOW_HEALTH_PORT: String(healthPort) });
    run.workers.push(worker);
    await worker.start();
    const readyz = `http://127.0.0.1:${healthPort}/readyz`;
    const probe = () => getJson(readyz).catch((err: Error) => ({ status: -1, body: { error: err.message } }));

    expect(await probe()).toEqual({ status: 200, body: { ready: true, reason: null } });
    expect((await getJson(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);

    let t = Date.now();
    await proxy.close();
    const down = await waitFor('/readyz to say not ready', probe, (r) => r.status === 503, { timeoutMs: 15_000, intervalMs: 100 });
    log(`not ready after ${Date.now() - t} ms: ${JSON.stringify(down.body)}`);
    expect(down.body).toMatchObject({ ready: false, reason: expect.stringMatching(/broker/) as unknown as string });
    // Alive all the while: the process is fine, only its broker is away.
    expect((await getJson(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);

    t = Date.now();
    proxy = await forward(amqpPort, target);
    await waitFor('/readyz to say ready again', probe, (r) => r.status === 200, { timeoutMs: 60_000, intervalMs: 200 });
    log(`ready again ${Date.now() - t} ms after the broker came back`);
    expect(worker.starts).toBe(1);
    expect(worker.child?.exitCode).toBeNull();
  }, 180_000);
});
