/**
 * A real OpenTelemetry SDK pipeline to a Zipkin server for tests: its own TracerProvider (never the
 * API's global one), every span exported as soon as it ends, and every export's outcome recorded,
 * so a span Zipkin refused fails the test with Zipkin's answer instead of going missing quietly.
 */
import type { Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export interface ZipkinTracing {
  tracer: Tracer;
  /** Flushes pending exports and shuts down; throws if any export failed. */
  shutdown(): Promise<void>;
}

export function zipkinTracing(serviceName: string, spansUrl: string): ZipkinTracing {
  const failures: string[] = [];
  const zipkin = new ZipkinExporter({ url: spansUrl });
  const recording: SpanExporter = {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void) {
      zipkin.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) {
          failures.push(`${spans.map((s) => s.name).join(', ')}: ${result.error?.message ?? 'export failed'}`);
        }
        done(result);
      });
    },
    shutdown: () => zipkin.shutdown(),
  };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: recording })],
  });
  return {
    tracer: provider.getTracer('sagaflow-tests'),
    async shutdown() {
      await provider.forceFlush();
      await provider.shutdown();
      if (failures.length) throw new Error(`Zipkin export to ${spansUrl} failed: ${failures.join('; ')}`);
    },
  };
}
