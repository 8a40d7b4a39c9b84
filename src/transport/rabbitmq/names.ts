import { DEAD_LETTER_CONSUMER, DEAD_LETTER_TOPIC } from '../contract.js';

/**
 * Every broker object name sagaflow uses, in one place, so the namespace prefix can't be forgotten
 * on one of them (the dead-letter objects and the retry queues included): several deployments, or
 * several test files, share one broker by choosing different namespaces.
 *
 *   topic T            -> fanout exchange  `<ns>T`
 *   consumer C         -> queue            `<ns>C`, bound to the exchange of each of its topics
 *   retry tier of C    -> queue            `<ns>C.retry.<ms>ms` (TTL, dead-letters back to `<ns>C`)
 *   DEAD_LETTER_TOPIC  -> exchange         `<ns>sagaflow.dead-letters` (the consumer queues' DLX)
 *   DEAD_LETTER_CONSUMER -> queue          `<ns>sagaflow.dead-letter-recorder`
 *
 * A non-empty namespace gets a `.` separator unless it already ends in `.`, `-`, `_` or `:`.
 */
export class Names {
  readonly prefix: string;

  constructor(namespace: string) {
    this.prefix = namespace === '' || /[.\-_:]$/.test(namespace) ? namespace : `${namespace}.`;
  }

  exchange(topic: string): string {
    return this.prefix + topic;
  }

  queue(consumer: string): string {
    return this.prefix + consumer;
  }

  /** One queue per (consumer, delay): a queue-level TTL expires messages strictly in order. */
  retryQueue(consumer: string, delayMs: number): string {
    return `${this.prefix}${consumer}.retry.${delayMs}ms`;
  }

  get deadLetterExchange(): string {
    return this.exchange(DEAD_LETTER_TOPIC);
  }

  get deadLetterQueue(): string {
    return this.queue(DEAD_LETTER_CONSUMER);
  }

  /** Broker name -> sagaflow name (topic or consumer); names from another namespace come back as they are. */
  strip(name: string): string {
    return this.prefix !== '' && name.startsWith(this.prefix) ? name.slice(this.prefix.length) : name;
  }
}
