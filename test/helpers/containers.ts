/**
 * Test services from testcontainers, for machines with a Docker engine. The global test setup
 * (test/helpers/services-setup.ts) asks `dockerAvailable()` once and, when it answers, starts
 * what the environment did not provide; each container is removed by `stop()` (and by
 * testcontainers' reaper if the run dies first).
 *
 * Images: Postgres and RabbitMQ are the ones docker-compose.yml runs (the artifacts test checks
 * that they agree), so tests under Docker use what users run. Kafka is Confluent's image of Apache
 * Kafka: @testcontainers/kafka 11 drives only confluentinc/cp-kafka (its start script is
 * /etc/confluent/docker/run); cp-kafka 8.0 is Apache Kafka 4.0 in KRaft mode. docker-compose uses
 * the official apache/kafka image, the local broker (scripts/kafka) the Apache release jars.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KafkaContainer } from '@testcontainers/kafka';
import { PostgreSqlContainer } from '@testcontainers/postgresql';
import { RabbitMQContainer } from '@testcontainers/rabbitmq';

export const TEST_IMAGES = {
  postgres: 'postgres:16',
  rabbitmq: 'rabbitmq:3.13-management',
  kafka: 'confluentinc/cp-kafka:8.0.0',
} as const;

/** Where `testcontainers` resolves from (the child process of dockerAvailable runs there). */
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The PLAINTEXT listener @testcontainers/kafka advertises with the host's mapped port. */
const KAFKA_CLIENT_PORT = 9093;

export interface StartedUrlService {
  /** postgres://... or amqp://... reachable from this machine. */
  readonly url: string;
  stop(): Promise<void>;
}

export interface StartedKafkaService {
  /** Bootstrap servers, `host:port` (KAFKA_BROKERS format). */
  readonly brokers: string;
  stop(): Promise<void>;
}

/**
 * True when a container runtime answers, by testcontainers' own strategies (TESTCONTAINERS_HOST_OVERRIDE
 * / DOCKER_HOST, ~/.testcontainers.properties, the Docker socket, rootless sockets). Asked in a
 * child process: a machine without an engine answers "no" at once (no socket), but a socket that
 * accepts and never answers would leave testcontainers' request pending forever and keep this
 * process from exiting; the child is simply killed after `timeoutMs`.
 */
export async function dockerAvailable(timeoutMs = 5_000): Promise<boolean> {
  const probe =
    "import('testcontainers').then((t) => t.getContainerRuntimeClient()).then(() => process.exit(0), () => process.exit(1));";
  return new Promise<boolean>((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '--eval', probe],
      { cwd: REPO_ROOT, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err) => resolve(err === null),
    );
  });
}

export async function startPostgresContainer(image: string = TEST_IMAGES.postgres): Promise<StartedUrlService> {
  const container = await new PostgreSqlContainer(image)
    .withDatabase('sagaflow')
    .withUsername('sagaflow')
    .withPassword('sagaflow')
    .start();
  return {
    url: container.getConnectionUri(), // postgres://sagaflow:sagaflow@<host>:<mapped port>/sagaflow
    stop: async () => {
      await container.stop();
    },
  };
}

export async function startRabbitMqContainer(image: string = TEST_IMAGES.rabbitmq): Promise<StartedUrlService> {
  // The module creates guest/guest, which the official image accepts from outside the container.
  const container = await new RabbitMQContainer(image).withStartupTimeout(120_000).start();
  const url = new URL(container.getAmqpUrl()); // amqp://<host>:<mapped port>
  url.username = 'guest';
  url.password = 'guest';
  return {
    url: url.toString(),
    stop: async () => {
      await container.stop();
    },
  };
}

export async function startKafkaContainer(image: string = TEST_IMAGES.kafka): Promise<StartedKafkaService> {
  const container = await new KafkaContainer(image)
    .withKraft()
    // Same rule as the local broker: sagaflow creates its topics, auto-creation would hide a
    // missing createTopics behind a 1-partition topic.
    .withEnvironment({ KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false' })
    .start();
  return {
    brokers: `${container.getHost()}:${container.getMappedPort(KAFKA_CLIENT_PORT)}`,
    stop: async () => {
      await container.stop();
    },
  };
}
