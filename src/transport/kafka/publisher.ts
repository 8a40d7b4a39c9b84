import type { Message, Producer } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import { PublishError, standardHeaders, type OutgoingMessage, type PublishFailure, type Publisher } from '../contract.js';
import { classifyProduceError, type ProduceFailure } from './errors.js';
import type { KafkaNames } from './names.js';
import type { KafkaTopology } from './topology.js';

interface Failed extends ProduceFailure {
  readonly ids: string[];
}

export interface KafkaPublisherDeps {
  readonly producer: Producer;
  readonly names: KafkaNames;
  readonly topology: KafkaTopology;
  /** A publish() is sent in requests of at most this many bytes per topic. */
  readonly maxBatchBytes: number;
  readonly stats: { published: number };
  isClosed(): boolean;
}

function record(m: OutgoingMessage): Message {
  return { key: m.key, value: m.body, headers: standardHeaders(m) };
}

/** The bytes a record takes in a produce request, near enough to cut requests by. */
function size(m: OutgoingMessage): number {
  let n = 70 + m.body.length + Buffer.byteLength(m.key);
  for (const [k, v] of Object.entries(standardHeaders(m))) n += k.length + Buffer.byteLength(v) + 4;
  return n;
}

/**
 * publish() on Kafka: acks = -1 on every request; one request per topic (and per `maxBatchBytes`),
 * because a record the broker refuses fails its whole request (tulios/kafkajs#949), and a request
 * refused for a non-retryable reason is split in halves until the refused records are isolated. The
 * PublishError names every failed message with its own code.
 */
export class KafkaPublisher implements Publisher {
  constructor(private readonly d: KafkaPublisherDeps) {}

  async publish(messages: readonly OutgoingMessage[]): Promise<void> {
    if (this.d.isClosed()) {
      throw new PublishError('the Kafka transport is closed', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: messages.map((m) => m.id) });
    }
    if (messages.length === 0) return;
    const byTopic = new Map<string, OutgoingMessage[]>();
    for (const m of messages) {
      let list = byTopic.get(m.topic);
      if (!list) byTopic.set(m.topic, (list = []));
      list.push(m);
    }
    const failed: Failed[] = [];
    let cause: unknown;
    await Promise.all(
      [...byTopic].map(async ([logical, msgs]) => {
        const ids = msgs.map((m) => m.id);
        try {
          const r = await this.d.topology.route(logical);
          if (!r.ok) {
            failed.push({ ids, code: 'UNROUTABLE', retryable: true, message: r.why });
            return;
          }
          failed.push(...(await this.#sendTopic(logical, msgs)));
        } catch (err) {
          cause = err;
          // An illegal topic name never becomes legal; anything else (the admin request failed) may.
          const permanent = (err as { code?: unknown }).code === 'CONFIG_INVALID';
          failed.push({ ids, code: permanent ? 'CONFIG_INVALID' : 'PUBLISH_FAILED', retryable: !permanent, message: errorMessage(err) });
        }
      }),
    );
    const failures: PublishFailure[] = failed.flatMap((f) => f.ids.map((id) => ({ id, code: f.code, retryable: f.retryable, message: f.message })));
    this.d.stats.published += messages.length - failures.length;
    if (failures.length > 0) throw PublishError.of(failures, messages.length, cause);
  }

  async close(): Promise<void> {
    await this.d.producer.disconnect();
  }

  #chunks(msgs: OutgoingMessage[]): OutgoingMessage[][] {
    const out: OutgoingMessage[][] = [];
    let cur: OutgoingMessage[] = [];
    let bytes = 0;
    for (const m of msgs) {
      const s = size(m);
      if (cur.length > 0 && bytes + s > this.d.maxBatchBytes) {
        out.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(m);
      bytes += s;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  async #sendChunk(topic: string, msgs: OutgoingMessage[]): Promise<Failed[]> {
    try {
      await this.d.producer.send({ topic, acks: -1, messages: msgs.map(record) });
      return [];
    } catch (err) {
      const f = classifyProduceError(err);
      if (!f.retryable && msgs.length > 1) {
        // One refused record fails the whole request: split it to isolate the refused ones.
        const mid = Math.ceil(msgs.length / 2);
        return [...(await this.#sendChunk(topic, msgs.slice(0, mid))), ...(await this.#sendChunk(topic, msgs.slice(mid)))];
      }
      return [{ ...f, ids: msgs.map((m) => m.id) }];
    }
  }

  async #sendTopic(logical: string, msgs: OutgoingMessage[]): Promise<Failed[]> {
    const topic = this.d.names.topic(logical);
    const parts = this.#chunks(msgs);
    const failed: Failed[] = [];
    for (let i = 0; i < parts.length; i++) {
      const f = await this.#sendChunk(topic, parts[i]!);
      failed.push(...f);
      const retryable = f.find((x) => x.retryable);
      if (retryable) {
        // Later records of this topic are not sent after an earlier one failed: a record of the same
        // key sent now and the failed one re-sent later would swap places.
        const rest = parts.slice(i + 1).flat();
        if (rest.length > 0) failed.push({ ...retryable, ids: rest.map((m) => m.id) });
        break;
      }
    }
    return failed;
  }
}
