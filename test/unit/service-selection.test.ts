/**
 * Where the test services come from (test/helpers/services-setup.ts), with the engine check
 * replaced by a recorded answer: every path of the selection, and that a machine whose engine
 * answers but cannot provide the images runs on its local services instead of failing.
 * test/integration/container-check.test.ts asks a real engine.
 */
import { describe, expect, it } from 'vitest';
import type { ContainersCheck } from '../helpers/containers.js';
import { planServices } from '../helpers/services-setup.js';

const OFFLINE: ContainersCheck = {
  usable: false,
  reason: 'an engine answers but postgres:16 is not present, and the pull failed (lookup: no such host)',
};
const USABLE: ContainersCheck = { usable: true, ryuk: false, notes: ['reaper not available'] };

/** A check that records the images it was asked about. */
function recording(answer: ContainersCheck) {
  const calls: string[][] = [];
  return { calls, check: async (images: string[]) => (calls.push(images), answer) };
}

describe('service selection', () => {
  it('auto: an engine that cannot provide the images -> the local services, with one loud line saying why', async () => {
    const r = recording(OFFLINE);
    const plan = await planServices({}, r.check);
    expect(r.calls).toEqual([['postgres:16', 'rabbitmq:3.13-management', 'apache/kafka:4.4.0']]);
    expect([plan.postgres, plan.rabbitmq, plan.kafka]).toEqual([{ from: 'local' }, { from: 'local' }, { from: 'local' }]);
    expect(plan.warnings).toHaveLength(1);
    expect(plan.warnings[0]).toMatch(/^containers NOT used, running on the local services: an engine answers but postgres:16 is not present/);
  });

  it('auto: engine and images there -> containers, with the configured image names', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_POSTGRES_IMAGE: 'local/pg:15', SAGAFLOW_KAFKA_IMAGE: 'local/kafka:4' }, r.check);
    expect(r.calls).toEqual([['local/pg:15', 'rabbitmq:3.13-management', 'local/kafka:4']]);
    expect(plan.postgres).toEqual({ from: 'containers', image: 'local/pg:15' });
    expect(plan.rabbitmq).toEqual({ from: 'containers', image: 'rabbitmq:3.13-management' });
    expect(plan.kafka).toEqual({ from: 'containers', image: 'local/kafka:4' });
    expect(plan.reaper).toBe(false);
    expect(plan.notes).toContain('reaper not available');
    expect(plan.warnings).toEqual([]);
  });

  it('auto: explicit addresses first; containers only for the rest, and no check when nothing is left', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ TEST_DATABASE_URL: 'postgres://a@h/db', KAFKA_BROKERS: 'h:9092' }, r.check);
    expect(r.calls).toEqual([['rabbitmq:3.13-management']]);
    expect(plan.postgres).toEqual({ from: 'env', url: 'postgres://a@h/db' });
    expect(plan.kafka).toEqual({ from: 'env', url: 'h:9092' });
    expect(plan.rabbitmq.from).toBe('containers');

    const none = recording(USABLE);
    const all = await planServices({ DATABASE_URL: 'postgres://b@h/db', AMQP_URL: 'amqp://h', KAFKA_BROKERS: 'h:9092' }, none.check);
    expect(none.calls).toEqual([]);
    expect([all.postgres.from, all.rabbitmq.from, all.kafka.from]).toEqual(['env', 'env', 'env']);
  });

  it('SAGAFLOW_TEST_DOCKER=off (older spelling): local services, the engine is not asked', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_TEST_DOCKER: 'off' }, r.check);
    expect(r.calls).toEqual([]);
    expect(plan.postgres).toEqual({ from: 'local' });
    expect(plan.warnings).toEqual([]);
  });

  it('containers forced: every service from a container, addresses in the environment ignored', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_TEST_SERVICES: 'containers', AMQP_URL: 'amqp://h' }, r.check);
    expect(r.calls).toEqual([['postgres:16', 'rabbitmq:3.13-management', 'apache/kafka:4.4.0']]);
    expect([plan.postgres.from, plan.rabbitmq.from, plan.kafka.from]).toEqual(['containers', 'containers', 'containers']);
    expect(plan.notes).toContain('SAGAFLOW_TEST_SERVICES=containers: ignoring AMQP_URL from the environment');
  });

  it('containers forced but not possible: a clear failure naming why and the image variables', async () => {
    await expect(planServices({ SAGAFLOW_TEST_SERVICES: 'containers', SAGAFLOW_TEST_KAFKA: 'skip' }, recording(OFFLINE).check)).rejects.toThrow(
      /^SAGAFLOW_TEST_SERVICES=containers, but containers cannot serve this run: an engine answers but postgres:16 is not present.*\nImages: SAGAFLOW_POSTGRES_IMAGE=postgres:16, SAGAFLOW_RABBITMQ_IMAGE=rabbitmq:3.13-management\.$/s,
    );
  });

  it('local forced: local services, the engine is not asked, addresses in the environment ignored', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_TEST_SERVICES: 'local', TEST_DATABASE_URL: 'postgres://a@h/db' }, r.check);
    expect(r.calls).toEqual([]);
    expect([plan.postgres, plan.rabbitmq, plan.kafka]).toEqual([{ from: 'local' }, { from: 'local' }, { from: 'local' }]);
    expect(plan.notes).toEqual(['SAGAFLOW_TEST_SERVICES=local: ignoring TEST_DATABASE_URL from the environment']);
  });

  it('env forced: every address from the environment, a missing one is a clear failure', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_TEST_SERVICES: 'env', DATABASE_URL: 'postgres://b@h/db', AMQP_URL: 'amqp://h', KAFKA_BROKERS: 'h:1' }, r.check);
    expect([plan.postgres.from, plan.rabbitmq.from, plan.kafka.from]).toEqual(['env', 'env', 'env']);
    expect(r.calls).toEqual([]);
    await expect(planServices({ SAGAFLOW_TEST_SERVICES: 'env', AMQP_URL: 'amqp://h' }, r.check)).rejects.toThrow(
      'SAGAFLOW_TEST_SERVICES=env, but no address is set for postgres (TEST_DATABASE_URL or DATABASE_URL), kafka (KAFKA_BROKERS)',
    );
  });

  it('SAGAFLOW_TEST_KAFKA=skip: no Kafka in any mode, loudly; its image is not asked for', async () => {
    const r = recording(USABLE);
    const plan = await planServices({ SAGAFLOW_TEST_KAFKA: 'skip' }, r.check);
    expect(plan.kafka).toEqual({ from: 'skip' });
    expect(r.calls).toEqual([['postgres:16', 'rabbitmq:3.13-management']]);
    expect(plan.warnings).toEqual(['SAGAFLOW_TEST_KAFKA=skip: every Kafka test is SKIPPED in this run']);
    const env = await planServices({ SAGAFLOW_TEST_SERVICES: 'env', SAGAFLOW_TEST_KAFKA: 'skip', DATABASE_URL: 'x', AMQP_URL: 'y' }, r.check);
    expect(env.kafka).toEqual({ from: 'skip' });
  });

  it('an unknown mode is an error, not a silent default', async () => {
    await expect(planServices({ SAGAFLOW_TEST_SERVICES: 'docker' }, recording(USABLE).check)).rejects.toThrow(
      'SAGAFLOW_TEST_SERVICES=docker is not one of auto, containers, local, env',
    );
  });
});
