import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.js';
import { watchBroker } from '../../src/observability/broker-state.js';
import { samplerFrom } from '../../src/observability/sdk.js';
import { extractSpanContext, passTraceHeaders, sagaRootContext, sagaTraceId, traceHeaders } from '../../src/observability/tracing.js';
import { reasonLabel, watchConsumerLag } from '../../src/observability/worker-hooks.js';
import { decodeMessage, encodeMessage } from '../../src/messages/wire.js';

describe('trace context in envelope headers', () => {
  it('parses and formats W3C traceparent and tracestate; refuses malformed and all-zero ids', () => {
    const h = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=a,other=b' };
    const sc = extractSpanContext(h)!;
    expect(sc).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true });
    expect(traceHeaders(sc)).toEqual(h);
    expect(extractSpanContext({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' })?.traceFlags).toBe(0);
    for (const bad of ['', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01']) {
      expect(extractSpanContext({ traceparent: bad }), bad).toBeUndefined();
    }
    expect(extractSpanContext(undefined)).toBeUndefined();
  });

  it('derives a saga’s trace id and root span from its id', () => {
    const id = '04550fb0-d838-5a09-81c9-08e2a674f7a3';
    expect(sagaTraceId(id)).toBe('04550fb0d8385a0981c908e2a674f7a3');
    expect(sagaRootContext(id)).toMatchObject({ traceId: '04550fb0d8385a0981c908e2a674f7a3', spanId: '81c908e2a674f7a3', traceFlags: 1 });
    expect(sagaRootContext('04550fb0-d838-5a09-0000-000000000000').spanId).toBe('0000000000000001');
  });

  it('passes trace headers through when tracing is off here', () => {
    const into: Record<string, string> = { a: '1' };
    passTraceHeaders({ traceparent: 'x', tracestate: 'y', other: 'z' }, into);
    expect(into).toEqual({ a: '1', traceparent: 'x', tracestate: 'y' });
    passTraceHeaders(undefined, into);
    expect(into).toEqual({ a: '1', traceparent: 'x', tracestate: 'y' });
  });

  it('survives the CloudEvents wire: the distributed-tracing attributes come back as the envelope’s trace headers', () => {
    const h = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=a' };
    const env = {
      id: '7f1c1b4e-3a59-4d6f-9c62-2b1f0f3f1a01',
      type: 'ReserveStock',
      schemaVersion: 1,
      tenantId: 'default',
      correlationId: 'c-1',
      occurredAt: '2026-01-01T00:00:00.000Z',
      headers: h,
      payload: { orderId: 'o-1' },
    };
    // Structured mode, as sagaflow writes it: the attributes are named traceparent/tracestate.
    const structured = encodeMessage(env, 'cloudevents');
    expect(JSON.parse(structured.body.toString('utf8'))).toMatchObject(h);
    expect(extractSpanContext(decodeMessage(structured.body, structured.headers).envelope.headers)).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' });
    // Binary mode, as a foreign producer may send it (Kafka ce_* headers, AMQP cloudEvents_*).
    for (const prefix of ['ce_', 'cloudEvents_']) {
      const attrs = { specversion: '1.0', id: env.id, source: '/elsewhere', type: 'ReserveStock', ...h };
      const headers = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`${prefix}${k}`, v]));
      const decoded = decodeMessage(Buffer.from(JSON.stringify(env.payload)), { ...headers, 'content-type': 'application/json' }).envelope;
      expect(decoded.headers, prefix).toEqual(h);
      expect(traceHeaders(extractSpanContext(decoded.headers)!), prefix).toEqual(h);
    }
  });
});

describe('bounded labels and settings', () => {
  it('keeps reason codes as labels only when they look like ours', () => {
    expect(reasonLabel('SCHEMA_INVALID')).toBe('SCHEMA_INVALID');
    expect(reasonLabel('MAX_ATTEMPTS_EXCEEDED')).toBe('MAX_ATTEMPTS_EXCEEDED');
    expect(reasonLabel('order 123 failed')).toBe('OTHER');
    expect(reasonLabel('X'.repeat(60))).toBe('OTHER');
  });

  it('reads the standard sampler variables and refuses what it does not know', () => {
    expect(samplerFrom({}).toString()).toMatch(/ParentBased/);
    expect(samplerFrom({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).toString()).toMatch(/0\.25/);
    expect(() => samplerFrom({ OTEL_TRACES_SAMPLER: 'jaeger_remote' })).toThrow(/not supported/);
    expect(() => samplerFrom({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/ratio/);
  });
});

describe('broker state from transport events', () => {
  it('follows connection loss, blocking and consumer cancellation, and recovers', () => {
    const events = new EventEmitter();
    const s = watchBroker({ events });
    expect(s.problem()).toBeNull();
    events.emit('disconnected', { generation: 1 });
    expect(s.problem()).toMatch(/connection lost/);
    events.emit('reconnected', {});
    expect(s.problem()).toBeNull();
    events.emit('consumer-cancelled', { consumer: 'participant.stock' });
    expect(s.problem()).toBe('not consuming: participant.stock');
    events.emit('consumer-restored', { consumer: 'participant.stock' });
    events.emit('blocked', { reason: 'low on memory' });
    expect(s.problem()).toMatch(/blocks publishing/);
    events.emit('unblocked', {});
    events.emit('crash', { consumer: 'saga.order' });
    expect(s.problem()).toMatch(/saga\.order/);
    events.emit('joined', { consumer: 'saga.order' });
    expect(s.problem()).toBeNull();
    events.emit('fatal', new Error('gone'));
    expect(s.problem()).toMatch(/failed for good: gone/);
    s.dispose();
    expect(events.listenerCount('disconnected')).toBe(0);
    expect(watchBroker({}).problem()).toBeNull();
  });
});

describe('metrics while the database is away', () => {
  it('the database gauges say NaN and the scrape still answers; they read again once it is back', async () => {
    let up = false;
    const db = {
      query: async () => {
        if (!up) throw new Error('connect ECONNREFUSED');
        return { rows: [{ outbox_rows: '3', outbox_age: 1.5, timer_lag: null }], rowCount: 1 };
      },
      pool: { totalCount: 4, idleCount: 1, waitingCount: 2 },
    };
    const registry = new Registry();
    new Metrics(registry, { db: db as never, schema: 'sagaflow' });
    const down = await registry.metrics();
    expect(down).toMatch(/^sagaflow_outbox_backlog_messages nan$/im);
    expect(down).toMatch(/^sagaflow_db_pool_connections\{state="in_use"\} 3$/m);
    expect(down).toMatch(/^sagaflow_db_pool_waiting_requests 2$/m);
    up = true;
    const back = await registry.metrics();
    expect(back).toMatch(/^sagaflow_outbox_backlog_messages 3$/m);
    expect(back).toMatch(/^sagaflow_outbox_oldest_age_seconds 1.5$/m);
    expect(back).toMatch(/^sagaflow_timer_lag_seconds 0$/m);
  });
});

describe('Kafka consumer lag from transport events', () => {
  it('sums the partitions of a consumer and topic, ignores malformed events, and stops on dispose', async () => {
    const registry = new Registry();
    const metrics = new Metrics(registry);
    const transport = { events: new EventEmitter() };
    const stop = watchConsumerLag(transport, metrics);
    const value = async () => (await registry.getSingleMetric('sagaflow_kafka_consumer_lag_messages')!.get()).values.find((v) => v.labels.consumer === 'c')?.value;
    transport.events.emit('lag', { consumer: 'c', topic: 't', partition: 0, messages: 5 });
    transport.events.emit('lag', { consumer: 'c', topic: 't', partition: 1, messages: 7 });
    expect(await value()).toBe(12);
    transport.events.emit('lag', { consumer: 'c', topic: 't', partition: 0, messages: 0 });
    transport.events.emit('lag', { consumer: 'c', topic: 't', partition: 'x', messages: 99 });
    expect(await value()).toBe(7);
    stop();
    transport.events.emit('lag', { consumer: 'c', topic: 't', partition: 1, messages: 100 });
    expect(await value()).toBe(7);
  });
});
