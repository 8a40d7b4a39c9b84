/**
 * The observability backends of scripts/observability, proven with the client libraries sagaflow
 * will use: a prom-client registry served on a loopback port is scraped by a real Prometheus
 * (Debian's package) and read back through its HTTP API; a span in this process and a span in a
 * child process, joined by a W3C traceparent, are exported by the real OpenTelemetry SDK and Zipkin
 * exporter to a real Zipkin server and come back from its API as one trace.
 *
 * A backend that cannot be installed here (no apt-get or no package for Prometheus; no Java, no
 * Maven or no Maven repository for Zipkin) makes its tests skip, with the reason in the test name
 * and a warning. Anything else that goes wrong fails.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT_CONTEXT, SpanKind, defaultTextMapSetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { Counter, Histogram, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusServer, type PromSample } from '../../scripts/observability/prometheus.js';
import { fetchZipkinTrace, startZipkin, type ZipkinServer, type ZipkinSpan } from '../../scripts/observability/zipkin.js';
import { prometheusUnavailable, zipkinUnavailable } from '../helpers/observability-backends.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';
import { zipkinTracing } from '../helpers/zipkin-tracing.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const log = (m: string): void => console.log(`[observability test] ${m}`);

const noPrometheus = prometheusUnavailable(log);
const noZipkin = await zipkinUnavailable(log);
for (const [name, reason] of [['Prometheus', noPrometheus], ['Zipkin', noZipkin]] as const) {
  if (reason) console.warn(`[observability test] WARNING: ${name} cannot be installed here, its tests are SKIPPED: ${reason}`);
}

describe('scrape targets', () => {
  it('refuses a target that is not on loopback, before starting anything', async () => {
    await expect(startPrometheus({ scrapeJobs: [{ job: 'x', targets: ['192.0.2.1:9100'] }] })).rejects.toThrow(/not a loopback/);
  });
});

describe.skipIf(noPrometheus !== undefined)('Prometheus (Debian package) scraping a prom-client registry', () => {
  const registry = new Registry();
  const sagas = new Counter({ name: 'sagaflow_obs_test_sagas_total', help: 'test counter', labelNames: ['outcome'] as const, registers: [registry] });
  const duration = new Histogram({ name: 'sagaflow_obs_test_step_duration_seconds', help: 'test histogram', buckets: [0.01, 0.1, 1], registers: [registry] });
  let metricsServer: Server;
  let prometheus: PrometheusServer;

  beforeAll(async () => {
    metricsServer = createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    await new Promise<void>((resolve) => metricsServer.listen(0, '127.0.0.1', resolve));
    const address = metricsServer.address();
    if (!address || typeof address === 'string') throw new Error('metrics server has no port');
    prometheus = await startPrometheus({ scrapeJobs: [{ job: 'obs-test', targets: [`127.0.0.1:${address.port}`] }], log });
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await new Promise((resolve) => metricsServer?.close(resolve));
  });

  const valueOf = (samples: PromSample[]): number | undefined => (samples.length === 1 ? samples[0]?.value : undefined);

  it('reads back through its HTTP API the values the registry serves, scrape after scrape', async () => {
    const { random } = seededRandom('observability-backends/prometheus');
    const completed = 1 + Math.floor(random() * 50);
    const compensated = 1 + Math.floor(random() * 50);
    const observations = Array.from({ length: 1 + Math.floor(random() * 20) }, () => random() * 2);
    sagas.inc({ outcome: 'completed' }, completed);
    sagas.inc({ outcome: 'compensated' }, compensated);
    for (const seconds of observations) duration.observe(seconds);

    const targets = await prometheus.waitForTargetsUp(30_000);
    expect(targets).toHaveLength(1);
    const query = (promql: string) => () => prometheus.query(promql);
    const until = (what: string, promql: string, expected: number) =>
      waitFor(what, query(promql), (s) => valueOf(s) === expected, { timeoutMs: 20_000, intervalMs: 200 });

    await until('the completed count', 'sagaflow_obs_test_sagas_total{job="obs-test",outcome="completed"}', completed);
    await until('the compensated count', 'sagaflow_obs_test_sagas_total{job="obs-test",outcome="compensated"}', compensated);
    await until('the histogram count', 'sagaflow_obs_test_step_duration_seconds_count{job="obs-test"}', observations.length);
    const below1s = observations.filter((s) => s <= 1).length;
    await until('the le="1" bucket', 'sagaflow_obs_test_step_duration_seconds_bucket{job="obs-test",le="1"}', below1s);
    expect(valueOf(await prometheus.query('up{job="obs-test"}'))).toBe(1);

    // A later change shows up too: Prometheus keeps scraping, it did not just read once.
    sagas.inc({ outcome: 'completed' }, 7);
    await until('the completed count after 7 more', 'sagaflow_obs_test_sagas_total{job="obs-test",outcome="completed"}', completed + 7);
  }, 90_000);

  it('rejects a malformed query with Prometheus’ own error', async () => {
    await expect(prometheus.query('sum(')).rejects.toThrow(/bad_data/);
  });
});

if (noPrometheus) describe('Prometheus', () => it.skip(`SKIPPED, cannot be installed here: ${noPrometheus}`, () => {}));

interface ChildReport {
  pid: number;
  traceId: string;
  spanId: string;
  remoteParentSpanId: string;
  tracestate: string;
}

/** Runs test/fixtures/otel-child-span.ts in a new Node process; fails with its stderr. */
function runTracedChild(env: Record<string, string>): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/otel-child-span.ts')], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      if (code !== 0) return reject(new Error(`traced child exited ${code ?? signal}: ${err.trim() || out.trim()}`));
      const last = out.trim().split('\n').pop() ?? '';
      resolve({ ...(JSON.parse(last) as Omit<ChildReport, 'pid'>), pid: child.pid ?? -1 });
    });
  });
}

describe.skipIf(noZipkin !== undefined)('Zipkin server fed by the OpenTelemetry SDK and Zipkin exporter', () => {
  let zipkin: ZipkinServer;

  beforeAll(async () => {
    zipkin = await startZipkin({ log });
  }, 400_000); // a new machine also extracts the jar and trains its class-data archive once

  afterAll(async () => {
    await zipkin?.stop();
  });

  it('joins a span here and a span in a child process into one trace through a W3C traceparent', async () => {
    const { seed } = seededRandom('observability-backends/zipkin');
    const parent = zipkinTracing('sagaflow-obs-parent', zipkin.spansUrl);
    const span = parent.tracer.startSpan('send command', { kind: SpanKind.PRODUCER, attributes: { 'process.pid': process.pid } });
    const { traceId, spanId } = span.spanContext();

    // What an envelope carries: the W3C headers, as strings.
    const headers: Record<string, string> = {};
    new W3CTraceContextPropagator().inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
    expect(headers.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    const tracestate = `sagaflow=t${seed.toString(16)}`;

    const child = await runTracedChild({ TRACEPARENT: headers.traceparent ?? '', TRACESTATE: tracestate, ZIPKIN_SPANS_URL: zipkin.spansUrl });
    span.end();
    await parent.shutdown();
    expect(child).toMatchObject({ traceId, remoteParentSpanId: spanId, tracestate });
    expect(child.pid).not.toBe(process.pid);

    const spans = await waitFor('both spans of the trace in Zipkin', () => zipkin.trace(traceId), (s) => (s?.length ?? 0) >= 2, {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    expect(spans).toHaveLength(2);
    const byId = new Map((spans ?? []).map((s): [string, ZipkinSpan] => [s.id, s]));
    const sent = byId.get(spanId);
    const handled = byId.get(child.spanId);
    expect(sent).toMatchObject({ traceId, name: 'send command', kind: 'PRODUCER', localEndpoint: { serviceName: 'sagaflow-obs-parent' } });
    expect(sent?.parentId).toBeUndefined();
    expect(sent?.tags?.['process.pid']).toBe(String(process.pid));
    expect(handled).toMatchObject({ traceId, parentId: spanId, name: 'handle command', kind: 'CONSUMER', localEndpoint: { serviceName: 'sagaflow-obs-child' } });
    expect(handled?.tags?.['process.pid']).toBe(String(child.pid));

    // The search API finds it by the child's service too.
    const found = await zipkin.traces({ serviceName: 'sagaflow-obs-child', limit: 100 });
    expect(found.some((t) => t.some((s) => s.traceId === traceId))).toBe(true);
  }, 120_000);

  it('answers "no such trace" for an id it never received', async () => {
    const { random } = seededRandom('observability-backends/zipkin-missing');
    const unknown = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
    expect(await fetchZipkinTrace(zipkin.url, unknown)).toBeUndefined();
    await expect(fetchZipkinTrace(zipkin.url, 'not-hex')).rejects.toThrow(/not a Zipkin trace id/);
  });
});

if (noZipkin) describe('Zipkin', () => it.skip(`SKIPPED, cannot be installed here: ${noZipkin}`, () => {}));
