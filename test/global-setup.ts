import type { TestProject } from 'vitest/node';
import { resolveServices } from './helpers/services-setup.js';

/**
 * Decides once, for the whole run, where Postgres, RabbitMQ and Kafka come from
 * (test/helpers/services-setup.ts: explicit env, else containers when an engine answers and has the
 * images, else the local services and the project's own Kafka broker; SAGAFLOW_TEST_SERVICES
 * forces one path) and hands the URLs to every test file through `provide`.
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
