import type { Message } from 'kafkajs';
import { classifyError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  asDeadLetter,
  deadLetterHeaders,
  type DeadLetterSink,
  type Delivery,
  type RedeliveryPolicy,
} from '../contract.js';
import { routeFailure, type FailureFacts, type FailureRoute } from '../failure-routing.js';
import { RETRY_ATTEMPT_HEADER, RETRY_DUE_HEADER, RETRY_TOPIC_HEADER } from './delivery.js';
import { classifyProduceError } from './errors.js';
import type { KafkaNames } from './names.js';

export interface FailedRecordsDeps {
  readonly names: KafkaNames;
  readonly logger: Logger;
  readonly stats: { retried: number; deadLettered: number; recordedDirectly: number };
  readonly group: string;
  readonly consumer: string;
  readonly retry: RedeliveryPolicy;
  readonly sink: DeadLetterSink | undefined;
  /** Produce one record with acks=all; rejects with the kafkajs error. */
  produce(topic: string, message: Message): Promise<void>;
  /** The subscription is closing: give up waiting (the record stays uncommitted). */
  isClosing(): boolean;
}

/** The failed records of one subscription: carries out what `routeFailure` decides for each. */
export class FailedRecords {
  constructor(private readonly d: FailedRecordsDeps) {}


  /**
   * A rejected handler: `routeFailure` decides, this carries it out. A copy (retry topic or
   * dead-letter topic) is produced with acks=all BEFORE the record counts as finished (its offset
   * may be committed), retried with backoff while the broker refuses it for now; during close() it
   * is given up after a few tries and the original is simply not committed (it comes back on the
   * next start). A copy the broker refuses for good (it grew past message.max.bytes with its
   * headers) is routed again with that fact: the record goes to Postgres through the
   * DeadLetterSink and its offset moves on, so one record never pins its partition.
   */
  async handle(d: Delivery, err: unknown): Promise<boolean> {
    const error = classifyError(err);
    let refused: FailureFacts['refused'];
    for (;;) {
      const route = routeFailure({
        error,
        attempt: d.attempt,
        policy: this.d.retry,
        recorder: this.d.consumer === DEAD_LETTER_CONSUMER,
        sink: this.d.sink !== undefined,
        refused,
      });
      switch (route.action) {
        case 'hold':
          this.d.logger.error({ group: this.d.group, id: d.id, why: route.why, retryInMs: route.delayMs }, 'a failed record cannot be stored anywhere; holding it');
          if (!(await this.#sleep(route.delayMs))) return false;
          refused = undefined;
          continue;
        case 'record':
          if (await this.#record(d, route.reason, route.error)) return true;
          return false;
        case 'retry':
        case 'dead-letter': {
          const stored = await this.#store(d, route);
          if (stored === true || stored === false) return stored;
          refused = { copy: route.action, code: stored.code, message: stored.message };
        }
      }
    }
  }

  /** Records through the sink, retried with backoff while the database refuses; false when closing. */
  async #record(d: Delivery, reason: string, error: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.d.sink!.record(asDeadLetter(d, this.d.consumer, reason, error));
        this.d.stats.recordedDirectly++;
        this.d.logger.warn({ group: this.d.group, id: d.id, reason }, 'the broker refused the copy; dead letter recorded in the database directly');
        return true;
      } catch (err) {
        this.d.logger.warn({ group: this.d.group, id: d.id, err: errorMessage(err), attempt }, 'could not record the dead letter in the database; retrying');
        if (!(await this.#sleep(Math.min(500 * 2 ** attempt, 10_000)))) return false;
      }
    }
  }

  /** The copy a route asks for: its topic and its headers. */
  #copy(d: Delivery, route: Extract<FailureRoute, { action: 'retry' | 'dead-letter' }>): { topic: string; message: Message; what: string } {
    if (route.action === 'dead-letter') {
      const headers = deadLetterHeaders(d, this.d.consumer, route.reason, route.error);
      return { topic: this.d.names.topic(DEAD_LETTER_TOPIC), message: { key: d.key ?? null, value: d.body, headers }, what: `dead letter (${route.reason})` };
    }
    const headers = {
      ...d.headers,
      [RETRY_ATTEMPT_HEADER]: String(route.attempt),
      [RETRY_TOPIC_HEADER]: d.topic,
      [RETRY_DUE_HEADER]: String(Date.now() + route.delayMs),
    };
    return { topic: this.d.names.retryTopic(this.d.consumer, route.delayMs), message: { key: d.key ?? null, value: d.body, headers }, what: `retry in ${route.delayMs} ms` };
  }

  /** true: stored; false: given up because the subscription closes; else a permanent refusal. */
  async #store(d: Delivery, route: Extract<FailureRoute, { action: 'retry' | 'dead-letter' }>): Promise<true | false | { code: string; message: string }> {
    const { topic, message, what } = this.#copy(d, route);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.d.produce(topic, message);
        if (route.action === 'retry') this.d.stats.retried++;
        else this.d.stats.deadLettered++;
        return true;
      } catch (err) {
        const f = classifyProduceError(err);
        if (!f.retryable) return { code: f.code, message: f.message };
        this.d.logger.warn({ group: this.d.group, topic, err: f.message, attempt }, `could not produce the ${what}; retrying`);
        if (this.d.isClosing() && attempt >= 2) return false;
        if (!(await this.#sleep(Math.min(100 * 2 ** attempt, 5_000)))) return false;
      }
    }
  }

  /** Waits; false if the subscription closed meanwhile (checked after the wait). */
  async #sleep(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, this.d.isClosing() ? Math.min(ms, 100) : ms));
    return !this.d.isClosing();
  }
}
