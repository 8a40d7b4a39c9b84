/** Which Apache Kafka release the local broker runs, and the entry points of its jars. */
/**
 * Newest 4.x that passes the kafkajs 2.2.4 smoke test (test/integration/kafka-broker.smoke.test.ts).
 * Override per call with `options.version` or globally with env `SAGAFLOW_KAFKA_VERSION`.
 */
export const DEFAULT_KAFKA_VERSION = '4.4.0';

/** Main class of `bin/kafka-server-start.sh` (via kafka-run-class.sh). */
export const KAFKA_SERVER_MAIN_CLASS = 'kafka.Kafka';
/** Main class of `bin/kafka-storage.sh`; a Scala object in the kafka_2.13 jar for all 4.x releases. */
export const KAFKA_STORAGE_MAIN_CLASS = 'kafka.tools.StorageTool';

/** `SAGAFLOW_KAFKA_VERSION`, else DEFAULT_KAFKA_VERSION. */
export function defaultVersion(): string {
  return process.env.SAGAFLOW_KAFKA_VERSION || DEFAULT_KAFKA_VERSION;
}
