import type { TestProject } from 'vitest/node';
import { resolveServices } from './helpers/services-setup.js';

/**
 * Decides once, for the whole run, where Postgres, RabbitMQ and Kafka come from (explicit env,
 * else testcontainers when a Docker engine answers, else the local services and the project's own
 * Kafka broker) and hands the URLs to every test file through `provide`.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const services = await resolveServices();
  project.provide('services', services.urls);
  return services.teardown;
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: { databaseUrl: string; amqpUrl: string; kafkaBrokers: string; source: string };
  }
}
