/**
 * Test services from testcontainers, for machines with a Docker engine. The global test setup
 * (test/helpers/services-setup.ts) asks checkContainers() once whether the engine answers and the
 * images are there, and only then starts containers; each one is removed by `stop()`.
 *
 * Images: one variable per service, read by docker-compose.yml too, so tests under Docker run what
 * the stack runs. The defaults are the official images; `scripts/docker/offline-images.sh` builds
 * stand-ins with the same environment contract for an engine that cannot pull. Kafka runs from the
 * compose file's own Kafka environment (docker/compose.kafka.yml) with a GenericContainer:
 * @testcontainers/kafka drives only Confluent's images (its start script is Confluent's).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { PostgreSqlContainer } from '@testcontainers/postgresql';
import { RabbitMQContainer } from '@testcontainers/rabbitmq';
import { GenericContainer, Wait, getContainerRuntimeClient } from 'testcontainers';
import { parse as parseYaml } from 'yaml';

export type ContainerService = 'postgres' | 'rabbitmq' | 'kafka';

/** The environment variable naming each service's image (docker-compose.yml reads the same). */
export const IMAGE_VARIABLES: Readonly<Record<ContainerService, string>> = {
  postgres: 'SAGAFLOW_POSTGRES_IMAGE',
  rabbitmq: 'SAGAFLOW_RABBITMQ_IMAGE',
  kafka: 'SAGAFLOW_KAFKA_IMAGE',
};

/** What a user with registry access pulls; the same defaults as docker-compose.yml. */
export const DEFAULT_IMAGES: Readonly<Record<ContainerService, string>> = {
  postgres: 'postgres:16',
  rabbitmq: 'rabbitmq:3.13-management',
  kafka: 'apache/kafka:4.4.0',
};

export function testImages(env: NodeJS.ProcessEnv = process.env): Record<ContainerService, string> {
  const pick = (s: ContainerService) => env[IMAGE_VARIABLES[s]]?.trim() || DEFAULT_IMAGES[s];
  return { postgres: pick('postgres'), rabbitmq: pick('rabbitmq'), kafka: pick('kafka') };
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROBE = fileURLToPath(new URL('./container-probe.mjs', import.meta.url));

/**
 * Every container a test run starts carries `OWNER_LABEL=<host>:<pid>`. With Ryuk (testcontainers'
 * reaper) unavailable, the next run's checkContainers() removes those whose process is gone.
 */
export const OWNER_LABEL = 'org.sagaflow.test-owner';
const owner = () => ({ [OWNER_LABEL]: `${hostname()}:${process.pid}` });

export type ContainersCheck = { usable: true; ryuk: boolean; notes: string[] } | { usable: false; reason: string };

export interface CheckOptions {
  /** Deadline for one image pull (images not present). Default SAGAFLOW_TEST_PULL_TIMEOUT_MS or 60 000. */
  pullTimeoutMs?: number;
  /** Deadline for the engine to answer at all. Default 10 000. */
  engineTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Whether containers can serve this run: an engine answers (testcontainers' own strategies:
 * DOCKER_HOST, ~/.testcontainers.properties, the Docker and rootless sockets) and every image is
 * present or pulled within the deadline. Asked in a child process killed at the overall deadline.
 * The reason, when not usable, names what is missing and how to provide it.
 */
export async function checkContainers(images: readonly string[], opts: CheckOptions = {}): Promise<ContainersCheck> {
  const env = opts.env ?? process.env;
  const pullTimeoutMs = opts.pullTimeoutMs ?? (Number(env.SAGAFLOW_TEST_PULL_TIMEOUT_MS) || 60_000);
  const engineTimeoutMs = opts.engineTimeoutMs ?? 10_000;
  // Each image and the reaper may need a pull; the engine's own answers take well under a second.
  const deadline = engineTimeoutMs + (images.length + 1) * (pullTimeoutMs + 2_000);
  const arg = JSON.stringify({ images, pullTimeoutMs, ownerLabel: OWNER_LABEL });
  const raw = await new Promise<{ out: string; err: (Error & { killed?: boolean }) | null }>((resolve) => {
    execFile(process.execPath, [PROBE, arg], { cwd: REPO_ROOT, env, timeout: deadline, killSignal: 'SIGKILL' }, (err, stdout) =>
      resolve({ out: stdout, err }),
    );
  });
  let probe: { engine: boolean; reason?: string; images?: Record<string, string>; ryuk?: string; removed?: number };
  try {
    probe = JSON.parse(raw.out.trim().split('\n').at(-1) ?? '');
  } catch {
    const why = raw.err?.killed ? `the engine did not answer within ${deadline} ms` : `the engine check failed (${raw.err?.message ?? 'no output'})`;
    return { usable: false, reason: why };
  }
  if (!probe.engine) return { usable: false, reason: `no container engine answers (${probe.reason})` };
  const missing = Object.entries(probe.images ?? {}).filter(([, state]) => state.startsWith('missing'));
  if (missing.length) {
    return {
      usable: false,
      reason:
        `an engine answers but ${groupByState(missing)}. ` +
        `Pull the images, name others (${Object.values(IMAGE_VARIABLES).join(', ')}), or build local stand-ins: ` +
        '`eval "$(bash scripts/docker/offline-images.sh)"`',
    };
  }
  const notes: string[] = [];
  const pulled = Object.entries(probe.images ?? {}).filter(([, state]) => state === 'pulled');
  if (pulled.length) notes.push(`pulled ${pulled.map(([image]) => image).join(', ')}`);
  const ryuk = probe.ryuk === 'present' || probe.ryuk === 'pulled';
  if (!ryuk && probe.ryuk !== 'disabled') {
    notes.push("testcontainers' reaper image is not available: this run's teardown removes its containers, and the next run removes those of a run that died");
  }
  if (probe.removed) notes.push(`removed ${probe.removed} container(s) left by test runs that died`);
  return { usable: true, ryuk, notes };
}

/** "a is why1; b, c are why2": one mention of each distinct failure (often the same pull error). */
function groupByState(missing: [string, string][]): string {
  const byState = new Map<string, string[]>();
  for (const [image, state] of missing) byState.set(state, [...(byState.get(state) ?? []), image]);
  return [...byState].map(([state, images]) => `${images.join(', ')} ${images.length > 1 ? 'are' : 'is'} ${state.replace(/^missing: /, '')}`).join('; ');
}

export interface StartedUrlService {
  /** postgres://... or amqp://... reachable from this machine. */
  readonly url: string;
  stop(): Promise<void>;
}

export async function startPostgresContainer(image: string): Promise<StartedUrlService> {
  const container = await new PostgreSqlContainer(image)
    .withDatabase('sagaflow')
    .withUsername('sagaflow')
    .withPassword('sagaflow')
    .withLabels(owner())
    .start();
  return {
    url: container.getConnectionUri(), // postgres://sagaflow:sagaflow@<host>:<mapped port>/sagaflow
    stop: async () => {
      await container.stop();
    },
  };
}

export async function startRabbitMqContainer(image: string): Promise<StartedUrlService> {
  // The module creates guest/guest, which the image accepts from outside the container.
  const container = await new RabbitMQContainer(image).withStartupTimeout(120_000).withLabels(owner()).start();
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

/** The listener the compose file publishes to the host (docker/compose.kafka.yml, EXTERNAL). */
const KAFKA_EXTERNAL_PORT = 9094;

/**
 * Kafka with the compose file's own environment (the official image's KAFKA_* contract, KRaft,
 * single node). The EXTERNAL listener advertises the host port, which must be known before the
 * broker starts: a free port is chosen here and bound explicitly.
 */
export async function startKafkaContainer(image: string): Promise<StartedUrlService> {
  const runtimeHost = (await getContainerRuntimeClient()).info.containerRuntime.host;
  // kafkajs would try ::1 first for "localhost"; the published port answers on IPv4 everywhere.
  const host = runtimeHost === 'localhost' ? '127.0.0.1' : runtimeHost;
  const hostPort = await freePort();
  const env = composeKafkaEnvironment();
  const container = await new GenericContainer(image)
    .withEnvironment({
      ...env,
      KAFKA_ADVERTISED_LISTENERS: `INTERNAL://localhost:9092,EXTERNAL://${host}:${hostPort}`,
    })
    .withExposedPorts({ container: KAFKA_EXTERNAL_PORT, host: hostPort })
    .withWaitStrategy(Wait.forListeningPorts())
    .withStartupTimeout(120_000)
    .withLabels(owner())
    .start();
  return {
    url: `${host}:${container.getMappedPort(KAFKA_EXTERNAL_PORT)}`,
    stop: async () => {
      await container.stop();
    },
  };
}

/** docker/compose.kafka.yml's Kafka environment, with compose's `${X:-default}` defaults applied. */
export function composeKafkaEnvironment(): Record<string, string> {
  const doc = parseYaml(readFileSync(`${REPO_ROOT}/docker/compose.kafka.yml`, 'utf8'), { merge: true }) as {
    services: { kafka: { environment: Record<string, string | number> } };
  };
  return Object.fromEntries(
    Object.entries(doc.services.kafka.environment).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1')]),
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
