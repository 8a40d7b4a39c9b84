/**
 * Where the test services come from, decided once per `vitest run` by test/global-setup.ts.
 * One resolver per service, each returning its address, where it came from and its own teardown,
 * so another source (testcontainers on machines with Docker) slots into one function:
 *
 * - Postgres:  TEST_DATABASE_URL / DATABASE_URL, else the local server.
 * - RabbitMQ:  AMQP_URL, else the local server.
 * - Kafka:     KAFKA_BROKERS (e.g. from `npm run kafka:start`), else the project's own single-node
 *              broker (scripts/kafka/broker.ts), started here once for the whole run and stopped in
 *              the teardown. SAGAFLOW_TEST_KAFKA=skip starts nothing (kafkaBrokers is then '' and
 *              the Kafka test files skip themselves).
 */
import { startKafkaBroker, type KafkaBroker } from '../../scripts/kafka/broker.js';

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

async function resolvePostgres(): Promise<Resolved> {
  const fromEnv = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  return { url: fromEnv ?? 'postgres://postgres@127.0.0.1:5432/postgres', source: fromEnv ? 'env' : 'local', teardown: nothing };
}

async function resolveRabbitMq(): Promise<Resolved> {
  const fromEnv = process.env.AMQP_URL;
  return { url: fromEnv ?? 'amqp://guest:guest@127.0.0.1:5672', source: fromEnv ? 'env' : 'local', teardown: nothing };
}

/** One broker per process even if resolveServices() were called twice (watch mode re-runs). */
let projectBroker: Promise<KafkaBroker> | undefined;

async function resolveKafka(): Promise<Resolved> {
  const fromEnv = process.env.KAFKA_BROKERS;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return { url: fromEnv.trim(), source: 'env', teardown: nothing };
  if (process.env.SAGAFLOW_TEST_KAFKA === 'skip') return { url: '', source: 'skipped', teardown: nothing };
  const started = Date.now();
  projectBroker ??= startKafkaBroker({ log: (m) => console.log(`[sagaflow tests] kafka: ${m}`) });
  let broker: KafkaBroker;
  try {
    broker = await projectBroker;
  } catch (err) {
    projectBroker = undefined;
    throw new Error(
      `could not start the project's Kafka broker (scripts/kafka/broker.ts needs Java 17+ and Maven once): ${(err as Error).message}\n` +
        'Point KAFKA_BROKERS at a running broker, or set SAGAFLOW_TEST_KAFKA=skip to run without the Kafka tests.',
      { cause: err },
    );
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
  const [pg, rabbit, kafka] = await Promise.all([resolvePostgres(), resolveRabbitMq(), resolveKafka()]);
  const urls: ServiceUrls = {
    databaseUrl: pg.url,
    amqpUrl: rabbit.url,
    kafkaBrokers: kafka.url,
    source: `postgres=${pg.source}, rabbitmq=${rabbit.source}, kafka=${kafka.source}`,
  };
  console.log(`[sagaflow tests] services: ${urls.source}${kafka.url ? ` (kafka at ${kafka.url})` : ''}`);
  return {
    urls,
    teardown: async () => {
      const results = await Promise.allSettled([kafka.teardown(), rabbit.teardown(), pg.teardown()]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
