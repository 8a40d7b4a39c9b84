import type { IHeaders, KafkaMessage } from 'kafkajs';
import { H, type Delivery } from '../contract.js';

/** Headers only the Kafka transport reads; they are removed from the Delivery a handler sees. */
export const RETRY_DUE_HEADER = 'x-sagaflow-retry-due';
export const RETRY_TOPIC_HEADER = 'x-sagaflow-retry-topic';
/**
 * The delivery attempt of a retry copy. Not H.attempt: that header is data of the message (a dead
 * letter carries the attempt it died on) and must pass through the recorder's own retries unchanged.
 */
export const RETRY_ATTEMPT_HEADER = 'x-sagaflow-retry-attempt';

const EMPTY = Buffer.alloc(0);

/** kafkajs gives a header as Buffer, string, or an array when the key repeats (the last one wins). */
export function readHeaders(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k === '__proto__') continue;
    const one = Array.isArray(v) ? v[v.length - 1] : v;
    if (one === undefined) continue;
    out[k] = typeof one === 'string' ? one : one.toString('utf8');
  }
  return out;
}

/** The due time of a message in a retry topic (ms since the epoch); 0 (due now) when unreadable. */
export function retryDue(m: KafkaMessage): number {
  const raw = m.headers?.[RETRY_DUE_HEADER];
  const one = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  const n = one === undefined ? NaN : Number(one.toString());
  return Number.isFinite(n) ? n : 0;
}

/**
 * A Kafka record as a sagaflow Delivery. `topic` is the LOGICAL topic: for a record of a retry topic,
 * the topic it was first consumed from (the worker records it in dead letters and redrives there).
 * The attempt number is read only from retry topics: a record on a main topic is a first delivery,
 * whatever headers a re-published dead letter may carry.
 */
export function toDelivery(m: KafkaMessage, logicalTopic: string, fromRetryTopic: boolean): Delivery {
  const headers = readHeaders(m.headers);
  let topic = logicalTopic;
  let attempt = 1;
  if (fromRetryTopic) {
    topic = headers[RETRY_TOPIC_HEADER] ?? logicalTopic;
    const n = Number(headers[RETRY_ATTEMPT_HEADER]);
    attempt = Number.isInteger(n) && n >= 1 ? n : 1;
    delete headers[RETRY_TOPIC_HEADER];
    delete headers[RETRY_DUE_HEADER];
    delete headers[RETRY_ATTEMPT_HEADER];
  }
  return {
    topic,
    key: m.key ? m.key.toString('utf8') : headers[H.key],
    id: headers[H.messageId],
    type: headers[H.type],
    body: m.value ?? EMPTY,
    headers,
    attempt,
    redelivered: fromRetryTopic,
  };
}

/** A FIFO with O(1) shift (Array#shift is O(n) and a hot key can queue thousands of records). */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}
