import { z } from 'zod';
import { UsageError } from './errors.js';
import { groupTiming, type GroupTiming } from './transport/kafka/group-timing.js';

/**
 * The one reader of process.env: every setting is parsed and checked here, once, at the
 * composition root, and handed down as a frozen object. A bad value stops the process at start
 * with a message naming the variable, not somewhere deep in a handler.
 */
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const csvInts = z
  .string()
  .regex(/^\d+(,\d+)*$/, 'comma-separated milliseconds, e.g. 200,1000,5000')
  .transform((s) => s.split(',').map(Number));

/** A duration like 30d, 12h, 45m, 90s (retention windows); parsed to milliseconds. */
const duration = z
  .string()
  .regex(/^\d+(s|m|h|d)$/, 'a duration like 30d, 12h, 45m or 90s')
  .transform((s) => Number(s.slice(0, -1)) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[s.slice(-1) as 's']);

/** Topic of domain events unless SAGAFLOW_EVENTS_TOPIC says otherwise. */
export const DEFAULT_EVENTS_TOPIC = 'sagaflow.events';

/**
 * A URL with one of `schemes`; the message never quotes the value (it may hold a password).
 * Postgres also takes a socket directory path (`/var/run/postgresql`), as node-postgres does.
 */
const url = (schemes: readonly string[], example: string, paths = false) =>
  z.string().refine(
    (s) => {
      if (paths && s.startsWith('/')) return true;
      try {
        const u = new URL(s);
        return schemes.includes(u.protocol.slice(0, -1)) && (u.hostname !== '' || paths);
      } catch {
        return false;
      }
    },
    { message: `must be a ${schemes.map((x) => `${x}://`).join(' or ')} URL with a host, like ${example}` },
  );

export const envSchema = z.object({
  DATABASE_URL: url(['postgres', 'postgresql', 'socket'], 'postgres://user:password@127.0.0.1:5432/database', true).default(
    'postgres://postgres@127.0.0.1:5432/postgres',
  ),
  SAGAFLOW_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _')
    .default('sagaflow'),
  SAGAFLOW_TRANSPORT: z.enum(['memory', 'rabbitmq', 'kafka']).default('memory'),
  AMQP_URL: url(['amqp', 'amqps'], 'amqp://user:password@127.0.0.1:5672').default('amqp://guest:guest@127.0.0.1:5672'),
  KAFKA_BROKERS: z
    .string()
    .regex(/^\s*(\[[0-9a-fA-F:.]+\]|[^\s,:[\]]+):\d{1,5}\s*(,\s*(\[[0-9a-fA-F:.]+\]|[^\s,:[\]]+):\d{1,5}\s*)*$/, 'comma-separated host:port pairs, like 127.0.0.1:9092,10.0.0.2:9092')
    .default('127.0.0.1:9092'),
  /** Prefix for every topic, queue and group name: isolates several deployments on one broker. */
  SAGAFLOW_NAMESPACE: z
    .string()
    .regex(/^[a-zA-Z0-9_.-]{0,64}$/)
    .default(''),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SAGAFLOW_DB_POOL: int(1, 100).default(10),
  SAGAFLOW_PREFETCH: int(1, 10_000).default(512),
  SAGAFLOW_MAX_BATCH: int(1, 1000).default(64),
  SAGAFLOW_CONCURRENT_BATCHES: int(1, 32).default(2),
  SAGAFLOW_SPARE_BATCHES: int(0, 32).default(0),
  SAGAFLOW_MAX_ATTEMPTS: int(1, 1000).default(5),
  SAGAFLOW_RETRY_DELAYS_MS: csvInts.default([200, 1000, 5000]),
  SAGAFLOW_MAX_MESSAGE_BYTES: int(1024, 128 * 1024 * 1024).default(256 * 1024),
  SAGAFLOW_EVENTS: z.enum(['all', 'terminal', 'none']).default('all'),
  SAGAFLOW_WIRE_FORMAT: z.enum(['cloudevents', 'legacy']).default('cloudevents'),
  SAGAFLOW_EVENTS_TOPIC: z.string().min(1).default(DEFAULT_EVENTS_TOPIC),
  /** Keep every applied saga input (saga_inputs) for `sagaflow history export`; off saves one row per transition. */
  SAGAFLOW_RECORD_INPUTS: z.enum(['on', 'off']).default('on'),
  SAGAFLOW_OUTBOX_GRACE_MS: int(0, 3_600_000).default(10_000),
  /** Safety-net poll (relay and timers) for work a crashed worker left, while the worker is busy. */
  SAGAFLOW_FALLBACK_POLL_MS: int(0, 3_600_000).default(30_000),
  /** The same poll once the worker has been idle for two minutes; 0 = no queries at all while idle. */
  SAGAFLOW_IDLE_POLL_MS: int(0, 86_400_000).default(300_000),
  SAGAFLOW_RABBITMQ_QUEUE_TYPE: z.enum(['classic', 'quorum']).default('quorum'),
  SAGAFLOW_KAFKA_PARTITIONS: int(1, 1000).default(6),
  /** Consumer-group timing; unset = the defaults of src/transport/kafka/group-timing.ts (6 s, 1 s, 10 s). */
  SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: int(1_000, 1_800_000).optional(),
  SAGAFLOW_KAFKA_HEARTBEAT_MS: int(100, 600_000).optional(),
  SAGAFLOW_KAFKA_REBALANCE_TIMEOUT_MS: int(1_000, 1_800_000).optional(),
  /** Admin API tokens: `name:token:role` entries separated by commas; role is `admin` or `read`. */
  SAGAFLOW_ADMIN_TOKENS: z.string().default(''),
  SAGAFLOW_ADMIN_HOST: z.string().default('127.0.0.1'),
  SAGAFLOW_ADMIN_PORT: int(0, 65535).default(8080),
  /** Retention of finished work (`sagaflow prune`): see src/ops/retention.ts for each window's reason. */
  SAGAFLOW_RETAIN_FINISHED_SAGAS: duration.prefault('30d'),
  SAGAFLOW_RETAIN_FAILED_SAGAS: duration.prefault('90d'),
  SAGAFLOW_RETAIN_INBOX: duration.prefault('7d'),
  SAGAFLOW_RETAIN_RESOLVED_DEAD_LETTERS: duration.prefault('30d'),
  SAGAFLOW_RETAIN_AUDIT: duration.prefault('365d'),
  /** Worker /healthz, /readyz and /metrics; 0 (the default) = not served. */
  SAGAFLOW_HEALTH_PORT: int(0, 65535).default(0),
  SAGAFLOW_HEALTH_HOST: z.string().min(1).default('127.0.0.1'),
  /** /healthz answers 503 once the event loop was blocked this long. */
  SAGAFLOW_HEALTH_STUCK_MS: int(100, 3_600_000).default(10_000),
  /** OpenTelemetry tracing (SDK loaded only then; configured by the standard OTEL_* variables). */
  SAGAFLOW_OTEL: z.enum(['0', '1']).default('0'),
  /** off: ignore the module's circuit breakers (every command is sent at once, as without them). */
  SAGAFLOW_CIRCUITS: z.enum(['on', 'off']).default('on'),
  SAGAFLOW_LIMITS: z.enum(['on', 'off']).default('on'),
  SAGAFLOW_REPLY_QUEUE: z.enum(['shared', 'separate']).default('shared'),
  /** Reliability testing only: publish every outgoing message twice. */
  SAGAFLOW_FAULT_DUPLICATE_PUBLISH: z.enum(['0', '1']).default('0'),
});

export type Env = z.output<typeof envSchema>;

export interface AdminToken {
  readonly name: string;
  readonly token: string;
  readonly role: 'admin' | 'read';
}

export function parseAdminTokens(spec: string): AdminToken[] {
  if (spec.trim() === '') return [];
  return spec.split(',').map((entry) => {
    const [name, token, role] = entry.split(':');
    if (!name || !token || (role !== 'admin' && role !== 'read')) {
      throw new UsageError('SAGAFLOW_ADMIN_TOKENS entries must be name:token:role with role admin or read', 'CONFIG_INVALID');
    }
    if (token.length < 16) throw new UsageError(`admin token ${name} is shorter than 16 characters`, 'CONFIG_INVALID');
    return { name, token, role };
  });
}

/** The environment mapped to the names the code uses; `Config` is its type, so the two cannot drift. */
function toConfig(e: Env) {
  return {
    databaseUrl: e.DATABASE_URL,
    schema: e.SAGAFLOW_SCHEMA,
    transport: e.SAGAFLOW_TRANSPORT,
    amqpUrl: e.AMQP_URL,
    kafkaBrokers: e.KAFKA_BROKERS.split(',').map((s) => s.trim()).filter(Boolean),
    namespace: e.SAGAFLOW_NAMESPACE,
    logLevel: e.LOG_LEVEL,
    dbPool: e.SAGAFLOW_DB_POOL,
    prefetch: e.SAGAFLOW_PREFETCH,
    maxBatch: e.SAGAFLOW_MAX_BATCH,
    concurrentBatches: e.SAGAFLOW_CONCURRENT_BATCHES,
    spareBatches: e.SAGAFLOW_SPARE_BATCHES,
    retry: { maxAttempts: e.SAGAFLOW_MAX_ATTEMPTS, delaysMs: e.SAGAFLOW_RETRY_DELAYS_MS },
    maxMessageBytes: e.SAGAFLOW_MAX_MESSAGE_BYTES,
    events: e.SAGAFLOW_EVENTS,
    eventsTopic: e.SAGAFLOW_EVENTS_TOPIC,
    wireFormat: e.SAGAFLOW_WIRE_FORMAT,
    recordInputs: e.SAGAFLOW_RECORD_INPUTS === 'on',
    outboxGraceMs: e.SAGAFLOW_OUTBOX_GRACE_MS,
    fallbackPollMs: e.SAGAFLOW_FALLBACK_POLL_MS,
    idlePollMs: e.SAGAFLOW_IDLE_POLL_MS,
    rabbitQueueType: e.SAGAFLOW_RABBITMQ_QUEUE_TYPE,
    kafkaPartitions: e.SAGAFLOW_KAFKA_PARTITIONS,
    kafkaGroup: kafkaGroupTiming(e),
    adminTokens: parseAdminTokens(e.SAGAFLOW_ADMIN_TOKENS),
    adminHost: e.SAGAFLOW_ADMIN_HOST,
    adminPort: e.SAGAFLOW_ADMIN_PORT,
    retention: {
      finishedSagasMs: e.SAGAFLOW_RETAIN_FINISHED_SAGAS,
      failedSagasMs: e.SAGAFLOW_RETAIN_FAILED_SAGAS,
      inboxMs: e.SAGAFLOW_RETAIN_INBOX,
      resolvedDeadLettersMs: e.SAGAFLOW_RETAIN_RESOLVED_DEAD_LETTERS,
      auditMs: e.SAGAFLOW_RETAIN_AUDIT,
    },
    health: { port: e.SAGAFLOW_HEALTH_PORT, host: e.SAGAFLOW_HEALTH_HOST, stuckMs: e.SAGAFLOW_HEALTH_STUCK_MS },
    otel: e.SAGAFLOW_OTEL === '1',
    circuits: e.SAGAFLOW_CIRCUITS === 'on',
    limits: e.SAGAFLOW_LIMITS === 'on',
    replyQueue: e.SAGAFLOW_REPLY_QUEUE,
    faults: { duplicatePublish: e.SAGAFLOW_FAULT_DUPLICATE_PUBLISH === '1' },
  };
}

type DeepReadonly<T> = T extends (infer E)[] ? readonly DeepReadonly<E>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

/** Everything a process is configured with, frozen. */
export type Config = DeepReadonly<ReturnType<typeof toConfig>>;

export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env, overrides: Partial<Env> = {}): Config {
  const parsed = envSchema.safeParse({ ...pickDefined(env), ...pickDefined(overrides as Record<string, unknown>) });
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new UsageError(`invalid configuration: ${String(first.path[0])}: ${first.message}`, 'CONFIG_INVALID');
  }
  return deepFreeze(toConfig(parsed.data));
}

function deepFreeze<T>(o: T): DeepReadonly<T> {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o as DeepReadonly<T>;
}

function kafkaGroupTiming(e: Env): GroupTiming {
  try {
    return groupTiming({
      sessionTimeoutMs: e.SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS,
      heartbeatIntervalMs: e.SAGAFLOW_KAFKA_HEARTBEAT_MS,
      rebalanceTimeoutMs: e.SAGAFLOW_KAFKA_REBALANCE_TIMEOUT_MS,
    });
  } catch (err) {
    throw new UsageError(`invalid configuration: SAGAFLOW_KAFKA_HEARTBEAT_MS / SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS: ${(err as Error).message}`, 'CONFIG_INVALID');
  }
}

function pickDefined(o: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== '') out[k] = v;
  return out;
}
