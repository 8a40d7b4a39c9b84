/**
 * Where the test services come from, decided once per `vitest run` by test/global-setup.ts.
 *
 * SAGAFLOW_TEST_SERVICES picks the path (default `auto`):
 *
 * - `auto`: for each service, an explicit address from the environment first (TEST_DATABASE_URL /
 *   DATABASE_URL, AMQP_URL, KAFKA_BROKERS); for the others, containers (testcontainers) when an
 *   engine answers AND every image they need is present or pulled within a short deadline
 *   (test/helpers/containers.ts); otherwise the local services (127.0.0.1:5432 and :5672,
 *   `bash scripts/ensure-services.sh` starts installed-but-stopped ones, and for Kafka the
 *   project's own broker, scripts/kafka/broker.ts), with ONE loud line saying why containers were
 *   not used. A machine whose engine cannot pull is never stranded: it runs on its local services.
 * - `containers`, `local`, `env`: that path for every service, whatever else is there; a forced
 *   path that cannot start fails the run with a message saying what is missing.
 *
 * Images: SAGAFLOW_POSTGRES_IMAGE, SAGAFLOW_RABBITMQ_IMAGE, SAGAFLOW_KAFKA_IMAGE (defaults: the
 * official images). SAGAFLOW_TEST_DOCKER=off is the older spelling of "auto, never containers".
 * SAGAFLOW_TEST_KAFKA=skip starts no Kafka (kafkaBrokers is then '' and the Kafka test files skip
 * themselves). Every address is checked before any test runs: a service that does not answer fails
 * the run with a message saying how to provide it, instead of failing (or skipping) tests.
 */
import { connect as amqpConnect } from 'amqplib';
import pg from 'pg';
import { startKafkaBroker, waitForKafkaReady, type KafkaBroker } from '../../scripts/kafka/broker.js';
import {
  IMAGE_VARIABLES,
  checkContainers,
  startKafkaContainer,
  startPostgresContainer,
  startRabbitMqContainer,
  testImages,
  type ContainerService,
  type ContainersCheck,
} from './containers.js';

export interface ServiceUrls {
  databaseUrl: string;
  amqpUrl: string;
  kafkaBrokers: string;
  source: string;
}

export const SERVICE_MODES = ['auto', 'containers', 'local', 'env'] as const;
export type ServicesMode = (typeof SERVICE_MODES)[number];

export type Choice =
  | { readonly from: 'env'; readonly url: string }
  | { readonly from: 'containers'; readonly image: string }
  | { readonly from: 'local' }
  | { readonly from: 'skip' };

export interface ServicesPlan {
  readonly mode: ServicesMode;
  readonly postgres: Choice;
  readonly rabbitmq: Choice;
  readonly kafka: Choice;
  /** Lines for the run's log; `warnings` are the loud ones (containers not used, Kafka skipped). */
  readonly notes: string[];
  readonly warnings: string[];
  /** With containers: whether testcontainers' reaper (Ryuk) image is available. */
  readonly reaper: boolean;
}

const SERVICES: readonly ContainerService[] = ['postgres', 'rabbitmq', 'kafka'];

/** The address variable(s) of each service, first one set wins. */
const ENV_ADDRESS: Readonly<Record<ContainerService, readonly string[]>> = {
  postgres: ['TEST_DATABASE_URL', 'DATABASE_URL'],
  rabbitmq: ['AMQP_URL'],
  kafka: ['KAFKA_BROKERS'],
};

const HOW: Readonly<Record<ContainerService, string>> = {
  postgres: 'set TEST_DATABASE_URL, run a Docker engine with the Postgres image, or start the local server (`bash scripts/ensure-services.sh`)',
  rabbitmq: 'set AMQP_URL, run a Docker engine with the RabbitMQ image, or start the local server (`bash scripts/ensure-services.sh`)',
  kafka: 'set KAFKA_BROKERS, run a Docker engine with the Kafka image, or let the project broker start (Java 17+, Maven once); SAGAFLOW_TEST_KAFKA=skip runs without the Kafka tests',
};

export function servicesMode(env: NodeJS.ProcessEnv): ServicesMode {
  const raw = env.SAGAFLOW_TEST_SERVICES?.trim() || 'auto';
  if (!(SERVICE_MODES as readonly string[]).includes(raw)) {
    throw new Error(`SAGAFLOW_TEST_SERVICES=${raw} is not one of ${SERVICE_MODES.join(', ')}`);
  }
  return raw as ServicesMode;
}

function envAddress(service: ContainerService, env: NodeJS.ProcessEnv): string | undefined {
  for (const name of ENV_ADDRESS[service]) {
    const v = env[name]?.trim();
    if (v) return v;
  }
  return undefined;
}

/**
 * Decides where each service comes from. `check` is asked at most once, and only when some
 * service would come from a container.
 */
export async function planServices(
  env: NodeJS.ProcessEnv,
  check: (images: string[]) => Promise<ContainersCheck> = (images) => checkContainers(images, { env }),
): Promise<ServicesPlan> {
  const mode = servicesMode(env);
  const notes: string[] = [];
  const warnings: string[] = [];
  const images = testImages(env);
  const skipKafka = env.SAGAFLOW_TEST_KAFKA === 'skip';
  const needed = SERVICES.filter((s) => !(s === 'kafka' && skipKafka));
  const choice: Record<ContainerService, Choice> = { postgres: { from: 'skip' }, rabbitmq: { from: 'skip' }, kafka: { from: 'skip' } };

  let reaper = false;
  if (skipKafka) warnings.push('SAGAFLOW_TEST_KAFKA=skip: every Kafka test is SKIPPED in this run');

  if (mode === 'env') {
    const missing = needed.filter((s) => envAddress(s, env) === undefined);
    if (missing.length) {
      throw new Error(
        `SAGAFLOW_TEST_SERVICES=env, but no address is set for ${missing.map((s) => `${s} (${ENV_ADDRESS[s].join(' or ')})`).join(', ')}`,
      );
    }
  }
  const fromEnv = mode === 'auto' || mode === 'env';
  if (mode === 'containers' || mode === 'local') {
    const ignored = needed.flatMap((s) => ENV_ADDRESS[s].filter((name) => env[name]?.trim()));
    if (ignored.length) notes.push(`SAGAFLOW_TEST_SERVICES=${mode}: ignoring ${ignored.join(', ')} from the environment`);
  }

  const rest: ContainerService[] = [];
  for (const s of needed) {
    const url = fromEnv ? envAddress(s, env) : undefined;
    if (url !== undefined) choice[s] = { from: 'env', url };
    else rest.push(s);
  }

  if (rest.length) {
    let useContainers = mode === 'containers';
    if (mode === 'auto' && env.SAGAFLOW_TEST_DOCKER === 'off') {
      notes.push('SAGAFLOW_TEST_DOCKER=off: containers not tried');
    } else if (mode === 'auto' || mode === 'containers') {
      const wanted = rest.map((s) => images[s]);
      const result = await check(wanted);
      if (result.usable) {
        useContainers = true;
        reaper = result.ryuk;
        notes.push(...result.notes);
      } else if (mode === 'containers') {
        throw new Error(
          `SAGAFLOW_TEST_SERVICES=containers, but containers cannot serve this run: ${result.reason}\n` +
            `Images: ${rest.map((s) => `${IMAGE_VARIABLES[s]}=${images[s]}`).join(', ')}.`,
        );
      } else {
        warnings.push(`containers NOT used, running on the local services: ${result.reason}`);
      }
    }
    for (const s of rest) choice[s] = useContainers ? { from: 'containers', image: images[s] } : { from: 'local' };
  }
  return { mode, postgres: choice.postgres, rabbitmq: choice.rabbitmq, kafka: choice.kafka, notes, warnings, reaper };
}

// ---------------------------------------------------------------------------------------------
// Starting and checking what the plan chose
// ---------------------------------------------------------------------------------------------

interface Resolved {
  readonly url: string;
  readonly source: string;
  teardown(): Promise<void>;
}

const nothing = async (): Promise<void> => {};
const log = (m: string) => console.log(`[sagaflow tests] ${m}`);

const LOCAL = {
  postgres: 'postgres://postgres@127.0.0.1:5432/postgres',
  rabbitmq: 'amqp://guest:guest@127.0.0.1:5672',
} as const;

/** Runs `check` against a resolved service; on failure tears it down and says how to provide one. */
async function verified(name: ContainerService, r: Resolved, check: (url: string) => Promise<void>): Promise<Resolved> {
  try {
    await check(r.url);
    return r;
  } catch (err) {
    await r.teardown().catch(() => {});
    throw new Error(
      `${name} (${r.source}) does not answer at ${redact(r.url)}: ${(err as Error).message}\n` +
        `To provide it: ${r.source === 'env' ? 'fix or unset the address in the environment, or ' : ''}${HOW[name]}.`,
      { cause: err },
    );
  }
}

async function fromContainer(name: ContainerService, image: string, start: (image: string) => Promise<{ url: string; stop(): Promise<void> }>): Promise<Resolved> {
  const t0 = Date.now();
  try {
    const c = await start(image);
    return { url: c.url, source: `container ${image}, started in ${((Date.now() - t0) / 1000).toFixed(1)} s`, teardown: c.stop };
  } catch (err) {
    throw new Error(`testcontainers could not start ${name} (${image}): ${(err as Error).message}\nTo provide it otherwise: ${HOW[name]}.`, { cause: err });
  }
}

async function pingPostgres(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
  } finally {
    await c.end().catch(() => {});
  }
}

async function pingRabbitMq(url: string): Promise<void> {
  const conn = await amqpConnect(url, { timeout: 5_000 });
  await conn.close();
}

/** Postgres and RabbitMQ: an address from env, a container, or the local server. */
async function resolveUrlService(
  name: 'postgres' | 'rabbitmq',
  c: Choice,
  start: (image: string) => Promise<{ url: string; stop(): Promise<void> }>,
  ping: (url: string) => Promise<void>,
): Promise<Resolved> {
  const r: Resolved =
    c.from === 'env'
      ? { url: c.url, source: 'env', teardown: nothing }
      : c.from === 'containers'
        ? await fromContainer(name, c.image, start)
        : { url: LOCAL[name], source: 'local', teardown: nothing };
  return verified(name, r, ping);
}

/** One broker per process even if resolveServices() were called twice (watch mode re-runs). */
let projectBroker: Promise<KafkaBroker> | undefined;

async function resolveKafka(c: Choice): Promise<Resolved> {
  if (c.from === 'skip') return { url: '', source: 'skipped (SAGAFLOW_TEST_KAFKA=skip)', teardown: nothing };
  if (c.from === 'env') {
    return verified('kafka', { url: c.url, source: 'env', teardown: nothing }, (url) => waitForKafkaReady(url, { timeoutMs: 15_000 }));
  }
  if (c.from === 'containers') {
    const r = await fromContainer('kafka', c.image, startKafkaContainer);
    return verified('kafka', r, (url) => waitForKafkaReady(url, { timeoutMs: 60_000 }));
  }
  const started = Date.now();
  projectBroker ??= startKafkaBroker({ log: (m) => log(`kafka: ${m}`) });
  let broker: KafkaBroker;
  try {
    broker = await projectBroker;
  } catch (err) {
    projectBroker = undefined;
    throw new Error(`could not start the project's Kafka broker (scripts/kafka/broker.ts): ${(err as Error).message}\nTo provide it: ${HOW.kafka}.`, {
      cause: err,
    });
  }
  return {
    url: broker.brokers,
    source: `project broker pid ${broker.pid}, started in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    teardown: async () => {
      projectBroker = undefined;
      await broker.stop();
    },
  };
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  /** Replaces the engine check (tests of the selection itself). */
  check?: (images: string[]) => Promise<ContainersCheck>;
}

export async function resolveServices(opts: ResolveOptions = {}): Promise<{ urls: ServiceUrls; plan: ServicesPlan; teardown: () => Promise<void> }> {
  const env = opts.env ?? process.env;
  const plan = await planServices(env, opts.check);
  for (const n of plan.notes) log(n);
  for (const w of plan.warnings) console.warn(`[sagaflow tests] WARNING: ${w}`);
  if (SERVICES.some((s) => plan[s].from === 'containers') && !plan.reaper) {
    // testcontainers reads this when it first needs its reaper; without the reaper image, our own
    // teardown and the next run's clean-up (checkContainers) remove the containers.
    process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  }
  const results = await Promise.allSettled([
    resolveUrlService('postgres', plan.postgres, startPostgresContainer, pingPostgres),
    resolveUrlService('rabbitmq', plan.rabbitmq, startRabbitMqContainer, pingRabbitMq),
    resolveKafka(plan.kafka),
  ]);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length) {
    // Stop what did start (containers, the broker) before failing the run.
    await Promise.allSettled(results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.teardown()] : [])));
    throw new Error(`test services are missing:\n${failures.map((f) => `- ${(f.reason as Error).message}`).join('\n')}`);
  }
  const [postgres, rabbit, kafka] = results.map((r) => (r as PromiseFulfilledResult<Resolved>).value) as [Resolved, Resolved, Resolved];
  const urls: ServiceUrls = {
    databaseUrl: postgres.url,
    amqpUrl: rabbit.url,
    kafkaBrokers: kafka.url,
    source: `postgres=${postgres.source}, rabbitmq=${rabbit.source}, kafka=${kafka.source}`,
  };
  log(`services (SAGAFLOW_TEST_SERVICES=${plan.mode}): ${urls.source}${kafka.url ? ` (kafka at ${kafka.url})` : ''}`);
  return {
    urls,
    plan,
    teardown: async () => {
      const settled = await Promise.allSettled([kafka.teardown(), rabbit.teardown(), postgres.teardown()]);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

/** URLs in messages without their password. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
}
