import { classifyError } from '../errors.js';
import type { Outcome } from '../scheduling/batcher.js';
import type { FinishedSaga, FinishedStep, Metrics, SagaOutcome } from './metrics.js';

/** A structural view of an applied transition (transaction/transitions.ts AppliedDecision). */
interface Applied {
  readonly decision: {
    readonly instance: { readonly id: string; readonly type: string } | null;
    readonly events: readonly { readonly type: string }[];
    readonly steps: readonly { readonly seq: number; readonly step: string; readonly kind: string; readonly status: string; readonly finished: boolean }[];
  };
}

const FINISHED: Readonly<Record<string, SagaOutcome>> = { SagaCompleted: 'completed', SagaCompensated: 'compensated', SagaFailed: 'failed' };

/** Counts what committed transitions did: sagas started and finished, and which durations to read. */
export function observeApplied(metrics: Metrics, applied: readonly Applied[]): void {
  const steps: FinishedStep[] = [];
  const sagas: FinishedSaga[] = [];
  for (const { decision: d } of applied) {
    const inst = d.instance;
    if (!inst) continue;
    for (const e of d.events) {
      if (e.type === 'SagaStarted') metrics.sagaStarted(inst.type);
      const outcome = FINISHED[e.type];
      if (outcome) {
        metrics.sagaFinished(inst.type, outcome);
        sagas.push({ sagaId: inst.id, sagaType: inst.type, outcome });
      }
    }
    for (const s of d.steps) {
      if (s.finished) steps.push({ sagaId: inst.id, seq: s.seq, sagaType: inst.type, step: s.step, kind: s.kind, status: s.status });
    }
  }
  metrics.finished(steps, sagas);
}

/** One batch's transaction: size, time, and each message's fate as the transport will see it. */
export function observeBatch(metrics: Metrics, consumer: string, outcomes: readonly Outcome<void>[], seconds: number): void {
  let ok = 0;
  let retry = 0;
  let dead = 0;
  for (const out of outcomes) {
    if (out.ok) ok++;
    else if (classifyError(out.error).retryable) retry++;
    else dead++;
  }
  metrics.batch(consumer, outcomes.length, seconds, retry === 0);
  if (ok) metrics.handled(consumer, 'ok', ok);
  if (retry) metrics.handled(consumer, 'retry', retry);
  if (dead) metrics.handled(consumer, 'dead_letter', dead);
}

/** A reason code from a dead letter's headers, as a bounded label: our codes are UPPER_SNAKE; anything else is OTHER. */
export function reasonLabel(code: string): string {
  return /^[A-Z][A-Z0-9_]{0,47}$/.test(code) ? code : 'OTHER';
}

/**
 * Feeds `sagaflow_kafka_consumer_lag_messages` from the 'lag' events the Kafka transport emits per
 * fetched batch (read duck-typed: other transports emit none). Returns the unsubscribe.
 */
export function watchConsumerLag(transport: object, metrics: Metrics): () => void {
  const events = (transport as { events?: { on?: unknown; off?: unknown } }).events;
  if (!events || typeof events.on !== 'function' || typeof events.off !== 'function') return () => {};
  const emitter = events as { on(e: string, l: (a: unknown) => void): unknown; off(e: string, l: (a: unknown) => void): unknown };
  const onLag = (a: unknown) => {
    const l = a as { consumer?: unknown; topic?: unknown; partition?: unknown; messages?: unknown } | null;
    if (typeof l?.consumer === 'string' && typeof l.topic === 'string' && typeof l.partition === 'number' && typeof l.messages === 'number') {
      metrics.consumerLag(l.consumer, l.topic, l.partition, l.messages);
    }
  };
  emitter.on('lag', onLag);
  return () => emitter.off('lag', onLag);
}
