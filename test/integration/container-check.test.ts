/**
 * The container check against the machine's real engine (test/helpers/containers.ts): an image
 * that is neither present nor pullable makes containers unusable with a reason, and the selection
 * then runs on the local services with one loud line instead of failing the run (the bug: an engine
 * that could not pull made `npm test` fail). The pull goes to a registry on a closed loopback port,
 * so it fails at once on any machine. Without an engine the same calls take the "no engine" branch;
 * the engine-only cases (leftover clean-up) say they are skipped.
 */
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { getContainerRuntimeClient } from 'testcontainers';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { OWNER_LABEL, checkContainers } from '../helpers/containers.js';
import { planServices } from '../helpers/services-setup.js';

const UNPULLABLE = '127.0.0.1:1/sagaflow/never:missing';

/** This process's environment without the addresses and forced mode of the current test run. */
function cleanEnv(over: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['TEST_DATABASE_URL', 'DATABASE_URL', 'AMQP_URL', 'KAFKA_BROKERS', 'SAGAFLOW_TEST_SERVICES', 'SAGAFLOW_TEST_DOCKER']) delete env[k];
  return { ...env, ...over };
}

let engine = false;
beforeAll(async () => {
  engine = (await checkContainers([], { pullTimeoutMs: 5_000 })).usable;
  console.log(`[container-check] ${engine ? 'an engine answers' : 'no engine answers: the engine-only cases are SKIPPED'}`);
});

describe('container check (real engine)', () => {
  it('an image neither present nor pullable: not usable, and the reason names the image and how to provide one', async () => {
    const r = await checkContainers([UNPULLABLE], { pullTimeoutMs: 20_000 });
    expect(r.usable).toBe(false);
    if (r.usable) return;
    if (engine) {
      expect(r.reason).toContain(`an engine answers but ${UNPULLABLE} is not present, and the pull failed`);
      expect(r.reason).toContain('scripts/docker/offline-images.sh');
      expect(r.reason).toContain('SAGAFLOW_POSTGRES_IMAGE');
    } else {
      expect(r.reason).toMatch(/^no container engine answers|did not answer/);
    }
  });

  it('auto selection: such an engine never strands the run, it runs on the local services with one loud line', async () => {
    const env = cleanEnv({ SAGAFLOW_POSTGRES_IMAGE: UNPULLABLE, SAGAFLOW_RABBITMQ_IMAGE: UNPULLABLE, SAGAFLOW_TEST_KAFKA: 'skip', SAGAFLOW_TEST_PULL_TIMEOUT_MS: '20000' });
    const plan = await planServices(env);
    expect([plan.postgres, plan.rabbitmq, plan.kafka]).toEqual([{ from: 'local' }, { from: 'local' }, { from: 'skip' }]);
    const loud = plan.warnings.filter((w) => w.startsWith('containers NOT used'));
    expect(loud).toHaveLength(1);
    if (engine) expect(loud[0]).toContain(`an engine answers but ${UNPULLABLE} is not present`);
  });

  it('containers forced with such an image: a clear failure, not a fallback', async () => {
    const env = cleanEnv({ SAGAFLOW_TEST_SERVICES: 'containers', SAGAFLOW_POSTGRES_IMAGE: UNPULLABLE, SAGAFLOW_TEST_KAFKA: 'skip', SAGAFLOW_TEST_PULL_TIMEOUT_MS: '20000' });
    await expect(planServices(env)).rejects.toThrow(/^SAGAFLOW_TEST_SERVICES=containers, but containers cannot serve this run: /);
  });

  it('containers left by a test run that died are removed by the next check; those of a live run are kept', async (ctx) => {
    if (!engine) ctx.skip();
    const client = await getContainerRuntimeClient();
    const docker = client.container.dockerode;
    const listed = (await docker.listImages()) as { RepoTags?: string[] | null }[];
    const images = listed.flatMap((i) => i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    if (images.length === 0) {
      console.log('[container-check] SKIPPED the clean-up case: the engine has no image to create a container from');
      ctx.skip();
    }
    const deadPid = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['-e', '']);
      child.on('exit', () => resolve(child.pid!));
    });
    const create = (pid: number) => docker.createContainer({ Image: images[0], Cmd: ['true'], Labels: { [OWNER_LABEL]: `${hostname()}:${pid}` } });
    const dead = await create(deadPid);
    const live = await create(process.pid);
    try {
      const r = await checkContainers([], { pullTimeoutMs: 5_000 });
      expect(r.usable).toBe(true);
      if (r.usable) expect(r.notes.join('\n')).toMatch(/removed [1-9]\d* container\(s\) left by test runs that died/);
      await expect(dead.inspect()).rejects.toThrow(/no such container/i);
      expect((await live.inspect()).Id).toBe(live.id);
    } finally {
      await live.remove({ force: true }).catch(() => {});
      await dead.remove({ force: true }).catch(() => {});
    }
  });

  it('the containers serving this run carry the owner label the clean-up keys on', async (ctx) => {
    const { source } = inject('services');
    if (!source.includes('container ')) {
      console.log('[container-check] SKIPPED the label case: this run uses no containers');
      ctx.skip();
    }
    // The global setup started them in vitest's main process, this file's parent.
    const docker = (await getContainerRuntimeClient()).container.dockerode;
    const mine = await docker.listContainers({ filters: { label: [`${OWNER_LABEL}=${hostname()}:${process.ppid}`] } });
    expect(mine.length).toBe((source.match(/container /g) ?? []).length);
  });
});
