/**
 * Where the test services come from, decided once per `vitest run` by test/global-setup.ts.
 * One resolver per service, each returning its address, where it came from and its own teardown.
 * For each service, in this order:
 *
 * 1. an explicit address from the environment: TEST_DATABASE_URL / DATABASE_URL, AMQP_URL,
 *    KAFKA_BROKERS (e.g. from `npm run kafka:start`);
 * 2. else, when a Docker engine answers (asked once, test/helpers/containers.ts), a container
 *    started with testcontainers for this run and removed in the teardown;
 * 3. else the local server (127.0.0.1:5432, :5672; `bash scripts/ensure-services.sh` starts
 *    installed-but-stopped ones) and, for Kafka, the project's own single-node broker
 *    (scripts/kafka/broker.ts), started here once and stopped in the teardown.
 *
 * SAGAFLOW_TEST_DOCKER=off skips step 2 (local services on a machine that has Docker).
 * SAGAFLOW_TEST_KAFKA=skip starts no Kafka (kafkaBrokers is then '' and the Kafka test files skip
 * themselves). Every address is checked before any test runs: a service that does not answer
 * fails the run with a message saying how to provide it, instead of failing (or skipping) tests.
 */
import { connect as amqpConnect } from 'amqplib';
import pg from 'pg';
import { startKafkaBroker, waitForKafkaReady, type KafkaBroker } from '../../scripts/kafka/broker.js';
import { TEST_IMAGES, dockerAvailable, startKafkaContainer, startPostgresContainer, startRabbitMqContainer } from './containers.js';

export interface ServiceUrls {
  databaseUrl: string;
  amqpUrl: string;
  kafkaBrokers: string;
  source: string;
}

interface Resolved {
  readonly url: string;
  readonly source: string;
  teardown(): Promise<void>;
}

const nothing = async (): Promise<void> => {};
const log = (m: string) => console.log(`[sagaflow tests] ${m}`);

/** Asked at most once per run, and only when a service is not given by the environment. */
let docker: Promise<boolean> | undefined;
function useDocker(): Promise<boolean> {
  docker ??= (async () => {
    if (process.env.SAGAFLOW_TEST_DOCKER === 'off') {
      log('docker: SAGAFLOW_TEST_DOCKER=off, using the local services');
      return false;
    }
    const yes = await dockerAvailable();
    log(yes ? 'docker: an engine answers, testcontainers provides what env does not' : 'docker: no engine answers, using the local services');
    return yes;
  })();
  return docker;
}

const HOW = {
  postgres: 'set TEST_DATABASE_URL, run a Docker engine (testcontainers starts Postgres), or start the local server (`bash scripts/ensure-services.sh`)',
  rabbitmq: 'set AMQP_URL, run a Docker engine (testcontainers starts RabbitMQ), or start the local server (`bash scripts/ensure-services.sh`)',
  kafka: 'set KAFKA_BROKERS, run a Docker engine (testcontainers starts Kafka), or let the project broker start (Java 17+, Maven once); SAGAFLOW_TEST_KAFKA=skip runs without the Kafka tests',
};

/** Runs `check` against a resolved service; on failure tears it down and says how to provide one. */
async function verified(name: keyof typeof HOW, r: Resolved, check: (url: string) => Promise<void>): Promise<Resolved> {
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

async function fromContainer(name: keyof typeof HOW, image: string, start: () => Promise<{ url: string; stop(): Promise<void> }>): Promise<Resolved> {
  const t0 = Date.now();
  try {
    const c = await start();
    return { url: c.url, source: `testcontainers ${image}, started in ${((Date.now() - t0) / 1000).toFixed(1)} s`, teardown: c.stop };
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

async function resolvePostgres(): Promise<Resolved> {
  const fromEnv = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  const r: Resolved = fromEnv
    ? { url: fromEnv, source: 'env', teardown: nothing }
    : (await useDocker())
      ? await fromContainer('postgres', TEST_IMAGES.postgres, startPostgresContainer)
      : { url: 'postgres://postgres@127.0.0.1:5432/postgres', source: 'local', teardown: nothing };
  return verified('postgres', r, pingPostgres);
}

async function resolveRabbitMq(): Promise<Resolved> {
  const fromEnv = process.env.AMQP_URL;
  const r: Resolved = fromEnv
    ? { url: fromEnv, source: 'env', teardown: nothing }
    : (await useDocker())
      ? await fromContainer('rabbitmq', TEST_IMAGES.rabbitmq, startRabbitMqContainer)
      : { url: 'amqp://guest:guest@127.0.0.1:5672', source: 'local', teardown: nothing };
  return verified('rabbitmq', r, pingRabbitMq);
}

/** One broker per process even if resolveServices() were called twice (watch mode re-runs). */
let projectBroker: Promise<KafkaBroker> | undefined;

async function resolveKafka(): Promise<Resolved> {
  const fromEnv = process.env.KAFKA_BROKERS;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return verified('kafka', { url: fromEnv.trim(), source: 'env', teardown: nothing }, (url) => waitForKafkaReady(url, { timeoutMs: 15_000 }));
  }
  if (process.env.SAGAFLOW_TEST_KAFKA === 'skip') {
    // An explicit, loud opt-out (no Java here), never a silent one.
    console.warn('[sagaflow tests] WARNING: SAGAFLOW_TEST_KAFKA=skip: every Kafka test is SKIPPED in this run');
    return { url: '', source: 'skipped (SAGAFLOW_TEST_KAFKA=skip)', teardown: nothing };
  }
  if (await useDocker()) {
    const r = await fromContainer('kafka', TEST_IMAGES.kafka, async () => {
      const c = await startKafkaContainer();
      return { url: c.brokers, stop: c.stop };
    });
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

export async function resolveServices(): Promise<{ urls: ServiceUrls; teardown: () => Promise<void> }> {
  const results = await Promise.allSettled([resolvePostgres(), resolveRabbitMq(), resolveKafka()]);
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
  log(`services: ${urls.source}${kafka.url ? ` (kafka at ${kafka.url})` : ''}`);
  return {
    urls,
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
