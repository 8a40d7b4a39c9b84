/**
 * The project's image on a real Docker engine: `docker build` of the Dockerfile on the configured
 * Node image (SAGAFLOW_NODE_IMAGE, e.g. the stand-in of scripts/docker/offline-images.sh), the
 * image's defaults (usage, non-root user), and its HEALTHCHECK: healthy in a running worker
 * container whose Postgres and RabbitMQ run on a bridge network this test makes, and the same
 * check command failing once the database is gone. Skipped, loudly, without an engine or images
 * (test/docker/docker.ts).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { docker, dockerGate, dockerImages, inspect, run } from './docker.js';

const images = dockerImages();
const gate = await dockerGate('the image tests (test/docker/image.test.ts)', [images.node, images.postgres, images.rabbitmq]);
const log = (m: string) => console.log(`[docker image] ${m}`);

/** The tag docker-compose.yml gives the image: the compose tests then build from a warm cache. */
const TAG = 'sagaflow:local';

describe.skipIf(!gate.run)('the sagaflow image', () => {
  const id = randomBytes(4).toString('hex');
  const net = `sagaflow-image-${id}`;
  const started: string[] = [];

  beforeAll(async () => {
    await docker(['network', 'create', net]);
  });

  afterAll(async () => {
    if (started.length) await run('docker', ['rm', '-f', '-v', ...started]);
    await run('docker', ['network', 'rm', net]);
  });

  it('builds from the Dockerfile on the configured Node image', async () => {
    const t0 = Date.now();
    await docker(['build', '--build-arg', `NODE_IMAGE=${images.node}`, '-t', TAG, '.'], { timeoutMs: 900_000 });
    log(`docker build --build-arg NODE_IMAGE=${images.node}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const usage = await run('docker', ['run', '--rm', TAG]);
    expect(usage.code, usage.stderr).toBe(0);
    expect(usage.stdout).toContain('Usage: sagaflow [options] [command]');
    expect((await docker(['run', '--rm', '--entrypoint', 'id', TAG, '-u'])).trim()).toBe('1000');
    const hc = JSON.parse(await docker(['inspect', '-f', '{{json .Config.Healthcheck}}', TAG])) as { Test: string[] };
    expect(hc.Test).toEqual(['CMD-SHELL', 'node /app/bin/sagaflow.js health --broker || exit 1']);
  }, 900_000);

  it('the HEALTHCHECK turns a running worker healthy; the same check fails once the database is gone', async () => {
    const pg = `${net}-postgres`;
    const mq = `${net}-rabbitmq`;
    const common = ['--network', net, '--label', `org.sagaflow.docker-test=${id}`];
    started.push(
      (await docker(['run', '-d', ...common, '--name', pg, '-e', 'POSTGRES_USER=sagaflow', '-e', 'POSTGRES_PASSWORD=pw', '-e', 'POSTGRES_DB=sagaflow', images.postgres])).trim(),
      (await docker(['run', '-d', ...common, '--name', mq, '--hostname', mq, '-e', 'RABBITMQ_DEFAULT_USER=sagaflow', '-e', 'RABBITMQ_DEFAULT_PASS=pw', images.rabbitmq])).trim(),
    );
    await waitFor('postgres to accept connections over TCP', () => run('docker', ['exec', pg, 'pg_isready', '-h', '127.0.0.1', '-U', 'sagaflow']), (r) => r.code === 0, {
      timeoutMs: 120_000,
    });
    await waitFor('rabbitmq to accept AMQP connections', () => run('docker', ['exec', mq, 'rabbitmq-diagnostics', '-q', 'check_port_connectivity']), (r) => r.code === 0, {
      timeoutMs: 180_000,
    });

    const env = ['-e', `DATABASE_URL=postgres://sagaflow:pw@${pg}:5432/sagaflow`, '-e', 'SAGAFLOW_TRANSPORT=rabbitmq', '-e', `AMQP_URL=amqp://sagaflow:pw@${mq}:5672`];
    const migrate = await run('docker', ['run', '--rm', ...common, ...env, TAG, 'migrate', '--module', 'examples/order'], { timeoutMs: 120_000 });
    expect(migrate.code, migrate.stderr).toBe(0);
    expect(migrate.stdout).toContain('module examples/order tables are ready');

    const worker = `${net}-worker`;
    started.push((await docker(['run', '-d', ...common, ...env, '--name', worker, TAG, 'worker', '--module', 'examples/order', '--role', 'orchestrator'])).trim());
    const t0 = Date.now();
    const [state] = await waitFor('the worker container to turn healthy (the image HEALTHCHECK)', () => inspect([worker]), (s) => s[0]?.health === 'healthy' || s[0]?.status !== 'running', {
      timeoutMs: 150_000,
      intervalMs: 1_000,
    });
    expect(state!.status).toBe('running');
    expect(state!.health).toBe('healthy');
    log(`worker healthy ${((Date.now() - t0) / 1000).toFixed(1)} s after start`);

    await docker(['stop', '-t', '10', pg]);
    const check = JSON.parse(await docker(['inspect', '-f', '{{json .Config.Healthcheck.Test}}', worker])) as string[];
    expect(check[0]).toBe('CMD-SHELL');
    const down = await run('docker', ['exec', worker, '/bin/sh', '-c', check[1]!], { timeoutMs: 60_000 });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/unhealthy/);
  }, 600_000);
});
