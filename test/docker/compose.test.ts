/**
 * The compose stack on a real Docker engine, with Compose v2 or v1 (whichever is installed;
 * SAGAFLOW_COMPOSE=docker-compose picks v1): RabbitMQ profile (docker-compose.yml), then the Kafka
 * overlay (docker/compose.kafka.yml). Each: `up -d --build`, migrate once, orchestrator, two
 * participant replicas and the admin API healthy; 1,000 orders through the publisher service; one
 * participant `docker kill`ed and one crashed mid-run; 900 completed / 100 compensated through the
 * admin API; nothing lost or doubled; `down -v` (test/docker/compose-stack.ts). Skipped, loudly,
 * without an engine, the images or a compose CLI (test/docker/docker.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../helpers/seed.js';
import { ComposeStack } from './compose-stack.js';
import { dockerGate, dockerImages, findCompose } from './docker.js';

const images = dockerImages();
const gate = await dockerGate('the compose stack tests (test/docker/compose.test.ts)', [images.node, images.postgres, images.rabbitmq, images.kafka], true);
const compose = gate.run ? await findCompose() : undefined;
if (compose) console.log(`[docker compose] ${compose.file} ${compose.prefix.join(' ')}: ${compose.version}`);

let stack: ComposeStack | undefined;
afterEach(async (ctx) => {
  await stack?.cleanUp(ctx.task.result?.state === 'fail');
  stack = undefined;
});

describe.skipIf(!gate.run)('the compose stack', () => {
  it('RabbitMQ: 1,000 orders through the publisher service, a participant killed and one crashed mid-run, nothing lost or doubled', async () => {
    stack = new ComposeStack({ compose: compose!, files: ['docker-compose.yml'], label: 'rabbitmq', random: seededRandom('compose rabbitmq').random });
    await stack.scenario();
    await stack.down();
    expect(Object.keys(stack.timings)).toContain('down -v');
  }, 1_500_000);

  it('Kafka overlay: the same scenario on Kafka, RabbitMQ not started', async () => {
    stack = new ComposeStack({
      compose: compose!,
      files: ['docker-compose.yml', 'docker/compose.kafka.yml'],
      label: 'kafka',
      random: seededRandom('compose kafka').random,
    });
    await stack.scenario();
    expect(await stack.containers('rabbitmq')).toEqual([]);
    await stack.down();
  }, 1_500_000);
});
