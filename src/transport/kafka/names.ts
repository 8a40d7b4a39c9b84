import { UsageError } from '../../errors.js';

/**
 * Every Kafka object name sagaflow uses, in one place, so the namespace prefix is never forgotten
 * (several deployments, or several test files, share one broker by choosing different namespaces):
 *
 *   topic T                 -> Kafka topic     `<ns>T`
 *   consumer C              -> consumer group  `<ns>C` (reads its topics AND its retry topics)
 *   retry tier d ms of C    -> Kafka topic     `<ns>C.retry.<d>`
 *   DEAD_LETTER_TOPIC       -> Kafka topic     `<ns>sagaflow.dead-letters`
 *
 * A non-empty namespace gets a `.` separator unless it already ends in `.`, `-` or `_` (the same
 * rule as the RabbitMQ names). Kafka topic names may only hold `[a-zA-Z0-9._-]` and at most 249
 * characters: a name outside that is a configuration error, reported before anything is created.
 */
export class KafkaNames {
  readonly prefix: string;

  constructor(namespace: string) {
    this.prefix = namespace === '' || /[.\-_]$/.test(namespace) ? namespace : `${namespace}.`;
    if (this.prefix !== '') checkTopicName(this.prefix);
  }

  topic(logical: string): string {
    return checkTopicName(this.prefix + logical);
  }

  group(consumer: string): string {
    return this.prefix + consumer;
  }

  /** One topic per (consumer, delay): every message in it waits the same time, so its head is due first. */
  retryTopic(consumer: string, delayMs: number): string {
    return checkTopicName(`${this.prefix}${consumer}.retry.${delayMs}`);
  }

  /** Kafka topic -> sagaflow topic; names from another namespace come back as they are. */
  logical(topic: string): string {
    return this.prefix !== '' && topic.startsWith(this.prefix) ? topic.slice(this.prefix.length) : topic;
  }
}

const LEGAL = /^[a-zA-Z0-9._-]+$/;

export function checkTopicName(name: string): string {
  if (name.length === 0 || name.length > 249 || !LEGAL.test(name) || name === '.' || name === '..') {
    throw new UsageError(
      `"${name}" is not a legal Kafka topic name (only letters, digits, '.', '_' and '-', at most 249 characters); ` +
        'check the namespace, topic and consumer names',
      'CONFIG_INVALID',
    );
  }
  return name;
}
