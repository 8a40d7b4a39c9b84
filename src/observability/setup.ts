import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from '../config.js';
import type { Db } from '../db/db.js';
import type { Logger } from '../log.js';
import { Metrics } from './metrics.js';
import { startOpsServer, watchEventLoop, workerReadiness, type OpsServer } from './http.js';
import type { SagaTracing } from './tracing.js';

/**
 * What a worker process turns on from its configuration: metrics and the ops endpoint when
 * SAGAFLOW_HEALTH_PORT is set, tracing when SAGAFLOW_OTEL=1 (the SDK is imported only then).
 * The CLI builds one and hands `metrics` and `tracing` to createWorker; nothing here is global.
 */
export interface Observability {
  readonly metrics: Metrics | undefined;
  readonly tracing: SagaTracing | undefined;
  /** Starts the ops endpoint (if configured); `started` says whether the worker consumes yet. */
  serve(deps: { transport: object; started: () => boolean }): Promise<OpsServer | undefined>;
  /** Stops the endpoint and exports pending spans. */
  close(): Promise<void>;
}

export async function setupObservability(deps: {
  config: Config;
  db: Db;
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
  serviceName: string;
}): Promise<Observability> {
  const { config, db, logger } = deps;
  const serving = config.health.port > 0;
  const registry = serving ? new Registry() : undefined;
  if (registry) collectDefaultMetrics({ register: registry });
  const metrics = registry ? new Metrics(registry, { db, schema: config.schema }) : undefined;
  const sdk = config.otel ? (await import('./sdk.js')).startTracingSdk({ env: deps.env, defaultServiceName: deps.serviceName, logger }) : undefined;
  let server: OpsServer | undefined;
  let stopWatch: (() => void) | undefined;
  return {
    metrics,
    tracing: sdk?.tracing,
    async serve({ transport, started }) {
      if (!serving) return undefined;
      const liveness = watchEventLoop({ stuckMs: config.health.stuckMs });
      const readiness = workerReadiness({ db, schema: config.schema, transport, started, logger });
      stopWatch = () => {
        liveness.stop();
        readiness.dispose();
      };
      server = await startOpsServer({ host: config.health.host, port: config.health.port, registry, liveness, readiness, logger });
      return server;
    },
    async close() {
      await server?.close();
      stopWatch?.();
      await metrics?.flushDurations();
      await sdk?.shutdown().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'span export at shutdown failed'));
    },
  };
}
