/**
 * (o) observability of one worker, in process, on real Postgres: the Prometheus counters agree with
 * the saga table; one compensated saga is one trace (trace id = saga id) holding its start, every
 * step's command and its handling, the failure and each compensation, parented hop by hop through
 * the envelope's traceparent header; a batch's transaction is a span linked to its messages; the
 * ops endpoint answers /healthz, /readyz and /metrics. The spans go to an in-memory exporter here;
 * test/e2e/observability.e2e.test.ts sends them to a real Zipkin across processes.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { orderSaga } from '../../../examples/order/index.js';
import { startOpsServer, watchEventLoop, workerReadiness } from '../../../src/observability/http.js';
import { Metrics } from '../../../src/observability/metrics.js';
import { ATTR, SagaTracing, extractSpanContext, sagaTraceId, traceHeaders } from '../../../src/observability/tracing.js';
import { buildAdminServer } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { waitFor } from '../../helpers/wait.js';
import { workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_obs');
const { startWorker, orders, startMessage, waitTerminal } = suite;

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
afterAll(() => provider.shutdown());

async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m?.values ?? []).find((s) => Object.entries(labels).every(([k, l]) => s.labels[k] === l));
  return v?.value ?? 0;
}

describe('(o) metrics, traces and the ops endpoint of a worker', () => {
  it('counts match the saga table; a compensated saga is one trace with every step, the failure and each compensation', async () => {
    const registry = new Registry();
    const metrics = new Metrics(registry, { db: suite.db, schema: suite.t.schema });
    const tracing = new SagaTracing(provider.getTracer('test'));
    const w = await startWorker({ options: { metrics, tracing } });
    const list = orders(5, ['none', 'shipping', 'none', 'stock', 'none']);
    const starts = list.map((o) => startMessage(o));
    await w.transport.publisher.publish(starts.map((s) => s.message));
    const rows = await waitTerminal(starts.map((s) => s.sagaId));
    const byStatus = (s: string) => rows.filter((r) => r.status === s).length;
    expect([byStatus('completed'), byStatus('compensated')]).toEqual([3, 2]);

    // Counters follow COMMIT; the terminal rows may be read a moment before the hook ran.
    await waitFor('the finished counters', () => value(registry, 'sagaflow_sagas_finished_total', { saga_type: 'order', outcome: 'compensated' }), (v) => v === 2, { timeoutMs: 5000 });
    expect(await value(registry, 'sagaflow_sagas_finished_total', { saga_type: 'order', outcome: 'completed' })).toBe(3);
    expect(await value(registry, 'sagaflow_sagas_started_total', { saga_type: 'order' })).toBe(5);
    expect(await value(registry, 'sagaflow_messages_handled_total', { consumer: orderSaga.consumer, outcome: 'ok' })).toBeGreaterThanOrEqual(5 + 3 * 3 + 2);
    await metrics.flushDurations();
    const text = await registry.metrics();
    expect(text).toMatch(/sagaflow_step_duration_seconds_count\{saga_type="order",step="shipOrder",kind="forward",status="failed"\} 1/);
    expect(text).toMatch(/sagaflow_saga_duration_seconds_count\{saga_type="order",outcome="compensated"\} 2/);
    expect(text).toMatch(/sagaflow_outbox_backlog_messages \d+/);
    expect(text).toMatch(/sagaflow_timer_lag_seconds 0/);
    expect(text).toMatch(/sagaflow_db_pool_connections\{state="in_use"\} \d+/);
    expect(text).toMatch(/sagaflow_batch_size_messages_count\{consumer="[^"]+"\} [1-9]/);
    // Bounded labels only: no saga or message id anywhere in the exposition.
    for (const s of starts) expect(text).not.toContain(s.sagaId);

    // The trace of the saga that failed at shipping.
    const shipped = starts[1]!.sagaId;
    const traceId = sagaTraceId(shipped);
    const spans = await waitFor('the compensated saga’s spans', async () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId), (s) => s.some((x) => x.name === 'order reply StockReleased'), {
      timeoutMs: 5000,
    });
    const names = spans.map((s) => s.name);
    for (const n of [
      'order start',
      'step reserveStock',
      'stock handle ReserveStock',
      'order reply StockReserved',
      'step chargePayment',
      'payment handle ChargePayment',
      'step shipOrder',
      'shipping handle ShipOrder',
      'order reply ShippingFailed',
      'compensate chargePayment',
      'payment handle RefundPayment',
      'compensate reserveStock',
      'stock handle ReleaseStock',
      'order reply StockReleased',
    ]) {
      expect(names, n).toContain(n);
    }
    const byName = (n: string): ReadableSpan => spans.find((s) => s.name === n)!;
    // Hop by hop: the participant's span is the command span's child, the reply span the participant's.
    expect(byName('shipping handle ShipOrder').parentSpanContext?.spanId).toBe(byName('step shipOrder').spanContext().spanId);
    expect(byName('order reply ShippingFailed').parentSpanContext?.spanId).toBe(byName('shipping handle ShipOrder').spanContext().spanId);
    const failure = byName('order reply ShippingFailed');
    expect(failure.status.code).toBe(SpanStatusCode.ERROR);
    expect(failure.events.map((e) => e.name)).toEqual(expect.arrayContaining(['step failed', 'compensation started']));
    expect(byName('order reply StockReleased').events.map((e) => e.name)).toContain('saga compensated');
    expect(failure.attributes).toMatchObject({ [ATTR.sagaId]: shipped, [ATTR.sagaType]: 'order', [ATTR.step]: 'shipOrder', [ATTR.attempt]: 1, [ATTR.tenant]: 'default', [ATTR.messageType]: 'ShippingFailed' });
    expect(byName('compensate chargePayment').attributes).toMatchObject({ [ATTR.phase]: 'compensation', [ATTR.step]: 'chargePayment' });

    // Each batch transaction is its own span, linked to the messages it carried.
    const txSpans = exporter.getFinishedSpans().filter((s) => s.name.startsWith('transaction '));
    expect(txSpans.length).toBeGreaterThan(0);
    const linked = txSpans.flatMap((s) => s.links.map((l) => l.context.traceId));
    expect(linked).toContain(traceId);
  });

  it('serves /healthz, /readyz and /metrics; a W3C traceparent round-trips through the headers', async () => {
    const registry = new Registry();
    new Metrics(registry, { db: suite.db, schema: suite.t.schema });
    const w = await startWorker();
    const liveness = watchEventLoop();
    const readiness = workerReadiness({ db: suite.db, schema: suite.t.schema, transport: w.transport, started: () => true, logger: silentLogger() });
    const server = await startOpsServer({ host: '127.0.0.1', port: 0, registry, liveness, readiness, logger: silentLogger() });
    try {
      const get = async (p: string) => {
        const r = await fetch(`${server.url}${p}`);
        return { status: r.status, body: await r.text() };
      };
      expect(await get('/healthz')).toMatchObject({ status: 200 });
      expect(await get('/readyz')).toEqual({ status: 200, body: JSON.stringify({ ready: true, reason: null }) });
      const m = await get('/metrics');
      expect(m.status).toBe(200);
      expect(m.body).toContain('# TYPE sagaflow_sagas_finished_total counter');
      expect((await get('/nope')).status).toBe(404);

      // A schema this code does not know is not ready (and says so, without any address).
      const other = workerReadiness({ db: suite.db, schema: 'sf_no_such_schema', transport: w.transport, started: () => true, logger: silentLogger() });
      expect(await other.probe()).toEqual({ ok: false, reason: expect.stringMatching(/schema|migrat/i) as unknown as string });
      other.dispose();
    } finally {
      await server.close();
      liveness.stop();
      readiness.dispose();
    }

    const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true };
    const headers = traceHeaders(sc);
    expect(headers).toEqual({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(extractSpanContext(headers)).toMatchObject(sc);
    expect(extractSpanContext({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' })).toBeUndefined();
    expect(extractSpanContext({ traceparent: 'garbage' })).toBeUndefined();
  });

  it('sagaflow serve’s admin server answers /metrics without a token', async () => {
    const registry = new Registry();
    new Metrics(registry, { db: suite.db, schema: suite.t.schema });
    const app = buildAdminServer({ db: suite.db, schema: suite.t.schema, sagas: [orderSaga], tokens: [], logger: silentLogger(), metrics: registry });
    try {
      const r = await app.inject({ method: 'GET', url: '/metrics' });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toContain('text/plain');
      expect(r.body).toMatch(/^sagaflow_outbox_backlog_messages \d+$/m);
    } finally {
      await app.close();
    }
  });
});
