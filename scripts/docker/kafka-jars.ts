/**
 * Prints the directory of the Apache Kafka jars for the Kafka stand-in image
 * (scripts/docker/offline-images.sh): the same Maven-fetched cache the project's local broker runs
 * from (scripts/kafka/broker.ts), downloaded once if missing.
 *
 *   npx tsx scripts/docker/kafka-jars.ts [version]
 */
import { DEFAULT_KAFKA_VERSION, ensureKafkaJars } from '../kafka/broker.js';

const version = process.argv[2] || process.env.SAGAFLOW_KAFKA_VERSION || DEFAULT_KAFKA_VERSION;
const libs = await ensureKafkaJars(version, (m) => process.stderr.write(`[kafka] ${m}\n`));
process.stdout.write(`${libs}\n`);
