/**
 * The project's image on a real Docker engine: `docker build` of the Dockerfile on the configured
 * Node image (SAGAFLOW_NODE_IMAGE, e.g. the stand-in of scripts/docker/offline-images.sh) and the
 * image's defaults (usage, the non-root user, its HEALTHCHECK). The HEALTHCHECK passing in running
 * worker containers, and failing without a database, is shown by the compose stack test, whose
 * workers run it (test/docker/compose.test.ts). Skipped, loudly, without an engine or the Node
 * image (test/docker/docker.ts).
 */
import { describe, expect, it } from 'vitest';
import { docker, dockerGate, dockerImages, run } from './docker.js';

const images = dockerImages();
const gate = await dockerGate('the image tests (test/docker/image.test.ts)', [images.node]);

/** The tag docker-compose.yml gives the image: the compose tests then build from a warm cache. */
const TAG = 'sagaflow:local';

describe.skipIf(!gate.run)('the sagaflow image', () => {
  it('builds from the Dockerfile on the configured Node image; prints its usage as uid 1000; has the worker HEALTHCHECK', async () => {
    const t0 = Date.now();
    await docker(['build', '--build-arg', `NODE_IMAGE=${images.node}`, '-t', TAG, '.'], { timeoutMs: 900_000 });
    console.log(`[docker image] docker build --build-arg NODE_IMAGE=${images.node}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const usage = await run('docker', ['run', '--rm', TAG]);
    expect(usage.code, usage.stderr).toBe(0);
    expect(usage.stdout).toContain('Usage: sagaflow [options] [command]');
    expect((await docker(['run', '--rm', '--entrypoint', 'id', TAG, '-u'])).trim()).toBe('1000');
    const hc = JSON.parse(await docker(['inspect', '-f', '{{json .Config.Healthcheck}}', TAG])) as { Test: string[] };
    expect(hc.Test).toEqual(['CMD-SHELL', 'node /app/bin/sagaflow.js health --broker || exit 1']);
  }, 900_000);
});
