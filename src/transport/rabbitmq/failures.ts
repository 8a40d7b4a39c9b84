import type { Options } from 'amqplib';
import { classifyError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { H, PublishError, asDeadLetter, deadLetterHeaders, type DeadLetterSink, type Delivery, type RedeliveryPolicy } from '../contract.js';
import { routeFailure, type FailureFacts, type FailureRoute } from '../failure-routing.js';
import { RECORDER_ATTEMPT_HEADER, TOPIC_HEADER, republishOptions } from './delivery.js';
import type { Names } from './names.js';
import type { ConfirmPublisher } from './publisher.js';
import type { TopologyRegistry } from './topology.js';

/** Pause before a requeue whose copy could not be stored: a broker refusing publishes is not hammered. */
const COPY_RETRY_PAUSE_MS = 1_000;

export interface FailedDeliveriesDeps {
  readonly names: Names;
  readonly logger: Logger;
  readonly stats: { acksDropped: number; recordedDirectly: number };
  readonly publisher: ConfirmPublisher;
  readonly topology: TopologyRegistry;
  readonly consumer: string;
  readonly topics: readonly string[];
  readonly retry: RedeliveryPolicy;
  readonly sink: DeadLetterSink | undefined;
  /** The consumer is the dead-letter recorder (its retries count in their own header). */
  readonly recorder: boolean;
  /** Waits before a requeue; cut short when the subscription closes. */
  pause(ms: number): Promise<void>;
}

/**
 * What the subscription does with the original once its failure is carried out: ack it (its copy
 * is confirmed, or it is recorded), requeue it (nothing could store it now), or nothing (the
 * delivering channel is gone: the broker redelivers it).
 */
export type Settle = 'ack' | 'requeue' | 'dropped';

/** The failed deliveries of one subscription: carries out what `routeFailure` decides for each. */
export class FailedDeliveries {
  constructor(private readonly d: FailedDeliveriesDeps) {}

  /**
   * A rejected handler: `routeFailure` decides, this carries it out. Every copy (retry or dead
   * letter) is confirmed BEFORE the original is acked (at least once); a copy the broker refuses for
   * good (an AMQP header table over 64 KiB cannot be encoded) is routed again with that fact, which
   * sends the message to Postgres through the DeadLetterSink. Never a hot requeue: nack-requeue
   * loops pin the broker's CPU (rabbitmq/rabbitmq-server#1020), so the original goes back to the
   * queue only after a pause.
   *
   * `alive` says whether the delivering channel is still open: acks are only valid there.
   */
  async handle(d: Delivery, err: unknown, alive: () => boolean): Promise<Settle> {
    const error = classifyError(err);
    let refused: FailureFacts['refused'];
    for (;;) {
      if (!alive()) {
        // The delivering channel is gone: the broker redelivers the original, so a copy would be a duplicate.
        this.d.stats.acksDropped++;
        return 'dropped';
      }
      const route = routeFailure({ error, attempt: d.attempt, policy: this.d.retry, recorder: this.d.recorder, sink: this.d.sink !== undefined, refused });
      switch (route.action) {
        case 'hold':
          this.d.logger.error({ consumer: this.d.consumer, id: d.id, why: route.why, retryInMs: route.delayMs }, 'a failed message cannot be stored anywhere; holding it');
          await this.d.pause(route.delayMs);
          return 'requeue';
        case 'record':
          return this.#record(d, route.reason, route.error);
        case 'retry':
        case 'dead-letter': {
          const stored = await this.#store(d, route, error.code);
          if (typeof stored === 'string') return stored;
          refused = { copy: route.action, code: stored.code, message: stored.message };
        }
      }
    }
  }

  /** Records through the sink; a database that refuses gets the original back after a pause. */
  async #record(d: Delivery, reason: string, error: string): Promise<Settle> {
    try {
      await this.d.sink!.record(asDeadLetter(d, this.d.consumer, reason, error));
    } catch (sinkErr) {
      this.d.logger.warn({ consumer: this.d.consumer, id: d.id, err: errorMessage(sinkErr) }, 'could not record the dead letter in the database; requeueing after a pause');
      await this.d.pause(COPY_RETRY_PAUSE_MS);
      return 'requeue';
    }
    this.d.stats.recordedDirectly++;
    this.d.logger.warn({ consumer: this.d.consumer, id: d.id, reason }, 'the broker refused the copy; dead letter recorded in the database directly');
    return 'ack';
  }

  /** 'ack': the copy is confirmed; 'requeue': refused for now; else the broker refused it for good. */
  async #store(d: Delivery, route: Extract<FailureRoute, { action: 'retry' | 'dead-letter' }>, code: string): Promise<Settle | { code: string; message: string }> {
    const copy = this.#copy(d, route);
    try {
      await this.d.publisher.send([{ id: d.id ?? '', exchange: copy.exchange, routingKey: copy.routingKey, body: d.body, options: copy.options }]);
    } catch (pubErr) {
      if (pubErr instanceof PublishError && !pubErr.retryable) return { code: pubErr.code, message: pubErr.message };
      // The broker refuses publishes for now: keep the original and hand it back after a pause.
      this.d.logger.warn({ consumer: this.d.consumer, id: d.id, err: errorMessage(pubErr) }, `could not publish the ${copy.what}; requeueing after a pause`);
      if (pubErr instanceof PublishError && pubErr.code === 'UNROUTABLE') {
        // A retry or dead-letter queue was deleted under us: declare it again before the
        // requeued original comes back, or it would bounce straight back here.
        await this.d.topology
          .ensureConsumer(this.d.consumer, this.d.topics, this.d.retry.delaysMs)
          .catch((e: unknown) => this.d.logger.warn({ consumer: this.d.consumer, err: errorMessage(e) }, 're-declaring the retry queues failed'));
      }
      await this.d.pause(COPY_RETRY_PAUSE_MS);
      return 'requeue';
    }
    this.d.logger.debug({ consumer: this.d.consumer, id: d.id, code }, copy.what);
    return 'ack';
  }

  /** Where the copy of a retry or dead-letter route goes, with which AMQP properties. */
  #copy(d: Delivery, route: Extract<FailureRoute, { action: 'retry' | 'dead-letter' }>): { exchange: string; routingKey: string; options: Options.Publish; what: string } {
    const { names, consumer } = this.d;
    if (route.action === 'dead-letter') {
      return {
        exchange: names.deadLetterExchange,
        routingKey: consumer,
        options: republishOptions(d, deadLetterHeaders(d, consumer, route.reason, route.error)),
        what: `dead letter (${route.reason})`,
      };
    }
    const counter = this.d.recorder ? RECORDER_ATTEMPT_HEADER : H.attempt;
    return {
      exchange: '',
      routingKey: names.retryQueue(consumer, route.delayMs),
      options: republishOptions(d, d.headers, { [counter]: String(route.attempt), [TOPIC_HEADER]: d.topic }),
      what: `retry in ${route.delayMs} ms (attempt ${route.attempt})`,
    };
  }
}
