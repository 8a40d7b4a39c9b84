import { ExportResultCode } from '@opentelemetry/core';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { SagaTracing } from './tracing.js';

/**
 * The OpenTelemetry SDK side, loaded with `await import()` only when SAGAFLOW_OTEL=1, so a worker
 * without tracing never loads the SDK. Configured by the standard variables:
 *   OTEL_SERVICE_NAME (default sagaflow-<role>), OTEL_RESOURCE_ATTRIBUTES (read by the SDK),
 *   OTEL_TRACES_EXPORTER=zipkin (default) | console | none,
 *   OTEL_EXPORTER_ZIPKIN_ENDPOINT (default http://localhost:9411/api/v2/spans),
 *   OTEL_TRACES_SAMPLER=parentbased_always_on (default) | always_on | always_off | traceidratio |
 *   parentbased_traceidratio | parentbased_always_off, with OTEL_TRACES_SAMPLER_ARG for ratios,
 *   OTEL_BSP_* for the batch span processor (read by the SDK).
 * The provider is not registered as OpenTelemetry's global one: sagaflow hands its tracer to the
 * worker explicitly, and an application embedding sagaflow keeps its own global setup.
 */
export interface TracingSdk {
  readonly tracing: SagaTracing;
  /** Exports what is pending and stops (call after the worker drained). */
  shutdown(): Promise<void>;
}

export function samplerFrom(env: Readonly<Record<string, string | undefined>>): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim().toLowerCase();
  const arg = env.OTEL_TRACES_SAMPLER_ARG;
  const ratio = arg === undefined || arg === '' ? 1 : Number(arg);
  if (!(ratio >= 0 && ratio <= 1)) throw new UsageError(`OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got ${arg}`, 'CONFIG_INVALID');
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    default:
      throw new UsageError(`OTEL_TRACES_SAMPLER ${name} is not supported (always_on, always_off, traceidratio, parentbased_*)`, 'CONFIG_INVALID');
  }
}

function exporterFrom(env: Readonly<Record<string, string | undefined>>, logger: Logger): SpanExporter | undefined {
  const kind = (env.OTEL_TRACES_EXPORTER ?? 'zipkin').trim().toLowerCase();
  if (kind === 'none') return undefined;
  if (kind === 'console') return new ConsoleSpanExporter();
  if (kind !== 'zipkin') throw new UsageError(`OTEL_TRACES_EXPORTER ${kind} is not supported here (zipkin, console, none)`, 'CONFIG_INVALID');
  const url = env.OTEL_EXPORTER_ZIPKIN_ENDPOINT || 'http://localhost:9411/api/v2/spans';
  const zipkin = new ZipkinExporter({ url });
  let failing = false;
  // An unreachable trace backend must never hurt the saga path: spans are dropped, one warning per outage.
  return {
    export(spans, done) {
      zipkin.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS && !failing) logger.warn({ url, err: result.error?.message }, 'span export failed; dropping spans until it works again');
        failing = result.code !== ExportResultCode.SUCCESS;
        done(result);
      });
    },
    shutdown: () => zipkin.shutdown(),
    forceFlush: () => zipkin.forceFlush?.() ?? Promise.resolve(),
  };
}

export function startTracingSdk(opts: { env: Readonly<Record<string, string | undefined>>; defaultServiceName: string; logger: Logger }): TracingSdk {
  const exporter = exporterFrom(opts.env, opts.logger);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: opts.env.OTEL_SERVICE_NAME || opts.defaultServiceName, 'process.pid': process.pid }),
    sampler: samplerFrom(opts.env),
    spanProcessors: exporter ? [new BatchSpanProcessor({ exporter })] : [],
  });
  opts.logger.info({ exporter: opts.env.OTEL_TRACES_EXPORTER ?? 'zipkin' }, 'OpenTelemetry tracing on');
  return {
    tracing: new SagaTracing(provider.getTracer('sagaflow')),
    async shutdown() {
      await provider.forceFlush();
      await provider.shutdown();
    },
  };
}
