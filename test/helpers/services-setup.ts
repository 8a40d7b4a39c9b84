/**
 * Where the test services come from. This first version uses explicit env URLs or the local
 * services; testcontainers and the local Kafka broker are wired in by their own issues.
 */
export interface ServiceUrls {
  databaseUrl: string;
  amqpUrl: string;
  kafkaBrokers: string;
  source: string;
}

export async function resolveServices(): Promise<{ urls: ServiceUrls; teardown: () => Promise<void> }> {
  const urls: ServiceUrls = {
    databaseUrl: process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    amqpUrl: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    kafkaBrokers: process.env.KAFKA_BROKERS ?? '',
    source: 'env/local',
  };
  console.log(`[sagaflow tests] services: ${urls.source}`);
  return { urls, teardown: async () => {} };
}
