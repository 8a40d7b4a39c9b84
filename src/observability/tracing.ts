import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  createTraceState,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import type { Envelope } from '../messages/envelope.js';
import { STEP_HEADERS } from '../saga/state.js';

/**
 * Distributed tracing with nothing but @opentelemetry/api: a worker without a `SagaTracing` does
 * no tracing work at all (every hook is behind `tracing?.`), and with one it only creates spans;
 * the SDK and its exporter live in sdk.ts, loaded by dynamic import when SAGAFLOW_OTEL=1.
 *
 * One saga is one trace, and its trace id IS the saga id (the uuid's 32 hex digits). Every hop
 * carries W3C trace context in the envelope's `headers` (`traceparent`, `tracestate`), but a timer
 * firing, an operator's replay or a redrive has no message to carry it: because the trace id is
 * derived, they join the same trace anyway, and an operator who knows the saga id knows its trace.
 * Spans without a message parent hang under a synthetic root span id derived the same way (never
 * exported itself: the saga lives longer than any process that could hold it open).
 */

export const TRACE_HEADERS = Object.freeze({ parent: 'traceparent', state: 'tracestate' });

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_SPAN = '0000000000000000';

/** The W3C `traceparent`/`tracestate` headers as a remote span context (undefined when absent or malformed). */
export function extractSpanContext(headers: Readonly<Record<string, string>> | undefined): SpanContext | undefined {
  const m = TRACEPARENT.exec(headers?.[TRACE_HEADERS.parent] ?? '');
  if (!m || /^0+$/.test(m[1]!) || m[2] === ZERO_SPAN) return undefined;
  const state = headers?.[TRACE_HEADERS.state];
  return {
    traceId: m[1]!,
    spanId: m[2]!,
    traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(state ? { traceState: createTraceState(state) } : {}),
  };
}

export function traceHeaders(sc: SpanContext): Record<string, string> {
  const out: Record<string, string> = { [TRACE_HEADERS.parent]: `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & TraceFlags.SAMPLED).toString(16)}` };
  const state = sc.traceState?.serialize();
  if (state) out[TRACE_HEADERS.state] = state;
  return out;
}

/** The saga's trace id: its uuid's hex digits. */
export function sagaTraceId(sagaId: string): string {
  return sagaId.replace(/-/g, '').toLowerCase();
}

/** The synthetic root of a saga's trace, parent of every span that has no message to take one from. */
export function sagaRootContext(sagaId: string): SpanContext {
  const traceId = sagaTraceId(sagaId);
  const spanId = traceId.slice(16) === ZERO_SPAN ? '0000000000000001' : traceId.slice(16);
  return { traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true };
}

/** The copied trace headers of `from`, for a message that continues it (tracing off: pass through). */
export function passTraceHeaders(from: Readonly<Record<string, string>> | undefined, into: Record<string, string>): void {
  const p = from?.[TRACE_HEADERS.parent];
  if (p === undefined) return;
  into[TRACE_HEADERS.parent] = p;
  const s = from?.[TRACE_HEADERS.state];
  if (s !== undefined) into[TRACE_HEADERS.state] = s;
}

/** Span attribute names: OpenTelemetry messaging conventions where one exists, `sagaflow.*` otherwise. */
export const ATTR = Object.freeze({
  sagaId: 'sagaflow.saga.id',
  sagaType: 'sagaflow.saga.type',
  step: 'sagaflow.step',
  phase: 'sagaflow.phase',
  attempt: 'sagaflow.attempt',
  tenant: 'sagaflow.tenant',
  messageType: 'sagaflow.message.type',
  consumer: 'messaging.consumer.group.name',
  messageId: 'messaging.message.id',
  destination: 'messaging.destination.name',
  operation: 'messaging.operation.type',
  batchCount: 'messaging.batch.message_count',
  code: 'sagaflow.code',
});

/** What a transition tells its span (a structural view of a Decision, so this file needs no engine import). */
export interface TracedDecision {
  readonly outcome: string;
  readonly code?: string | undefined;
  readonly message?: string | undefined;
  readonly events: readonly { readonly type: string; readonly payload: Readonly<Record<string, unknown>> }[];
}

/** What a transition batch asks of the span of the input it is applying. */
export interface TransitionTrace {
  /** Trace headers for a command about to be written: a PRODUCER span per command, child of the input's span. */
  commandHeaders(command: { readonly id: string; readonly type: string; readonly topic?: string | undefined; readonly headers: Readonly<Record<string, string>> }): Readonly<Record<string, string>>;
  /** Every decision the input led to (local steps chain several): span events, and error status on failure. */
  decision(d: TracedDecision): void;
}

export interface InputSpan extends TransitionTrace {
  end(error?: unknown): void;
}

export interface HandlerSpan {
  /** Trace headers for the reply, so the orchestrator's span of it is this span's child. */
  headers(): Record<string, string>;
  end(error?: unknown): void;
}

export interface TransactionSpan {
  end(error?: unknown): void;
}

function envelopeAttributes(env: Envelope): Attributes {
  const h = env.headers ?? {};
  const a: Attributes = { [ATTR.messageId]: env.id, [ATTR.messageType]: env.type, [ATTR.tenant]: env.tenantId };
  if (env.sagaId) a[ATTR.sagaId] = env.sagaId;
  if (h[STEP_HEADERS.step] !== undefined) a[ATTR.step] = h[STEP_HEADERS.step];
  if (h[STEP_HEADERS.phase] !== undefined) a[ATTR.phase] = h[STEP_HEADERS.phase];
  if (h[STEP_HEADERS.attempt] !== undefined) a[ATTR.attempt] = Number(h[STEP_HEADERS.attempt]);
  if (h[STEP_HEADERS.sagaType] !== undefined) a[ATTR.sagaType] = h[STEP_HEADERS.sagaType];
  return a;
}

function fail(span: Span, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  span.recordException(error instanceof Error ? error : message);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message.slice(0, 500) });
}

/** Span events for a saga's own events: names an operator reads, attributes that stay small. */
const EVENT_NAMES: Readonly<Record<string, string>> = {
  SagaStarted: 'saga started',
  SagaStepSucceeded: 'step succeeded',
  SagaStepFailed: 'step failed',
  SagaCompensating: 'compensation started',
  SagaCompensated: 'saga compensated',
  SagaCompleted: 'saga completed',
  SagaFailed: 'saga failed',
  SagaCancelled: 'saga cancelled',
  SagaReplayed: 'saga replayed',
};

function eventAttributes(payload: Readonly<Record<string, unknown>>): Attributes {
  const a: Attributes = {};
  for (const k of ['step', 'phase', 'attempt', 'willRetry', 'error', 'reason', 'fromStep', 'late'] as const) {
    const v = payload[k];
    if (typeof v === 'string') a[`sagaflow.${k}`] = v.slice(0, 500);
    else if (typeof v === 'number' || typeof v === 'boolean') a[`sagaflow.${k}`] = v;
  }
  return a;
}

/**
 * The spans of sagaflow's message path, over a Tracer from any OpenTelemetry SDK (or a test's).
 * Spans are parented explicitly from the envelope headers, never through an active context, so
 * no context manager is needed and batches of unrelated messages never leak into each other.
 */
export class SagaTracing {
  constructor(readonly tracer: Tracer) {}

  /** The parent for work on saga `sagaId` prompted by `headers`: their context when it is the saga's trace, else the saga root (the foreign one becomes a link). */
  #sagaParent(sagaId: string, headers: Readonly<Record<string, string>> | undefined): { parent: Context; links: Link[] } {
    const remote = extractSpanContext(headers);
    if (remote && remote.traceId === sagaTraceId(sagaId)) return { parent: trace.setSpanContext(ROOT_CONTEXT, remote), links: [] };
    return { parent: trace.setSpanContext(ROOT_CONTEXT, sagaRootContext(sagaId)), links: remote ? [{ context: remote, attributes: { 'sagaflow.link': 'message' } }] : [] };
  }

  /** The orchestrator applying a start message or a reply to saga `sagaId`. */
  sagaMessage(sagaType: string, sagaId: string, env: Envelope, kind: 'start' | 'reply'): InputSpan {
    const { parent, links } = this.#sagaParent(sagaId, env.headers);
    const span = this.tracer.startSpan(
      kind === 'start' ? `${sagaType} start` : `${sagaType} reply ${env.type}`,
      { kind: SpanKind.CONSUMER, links, attributes: { ...envelopeAttributes(env), [ATTR.sagaId]: sagaId, [ATTR.sagaType]: sagaType, [ATTR.operation]: 'process' } },
      parent,
    );
    return this.#inputSpan(span, sagaId, sagaType);
  }

  /** The orchestrator firing saga `sagaId`'s timer (a step timeout or a retry back-off ending). */
  sagaTimer(sagaType: string, sagaId: string): InputSpan {
    const { parent } = this.#sagaParent(sagaId, undefined);
    const span = this.tracer.startSpan(`${sagaType} timer`, { kind: SpanKind.INTERNAL, attributes: { [ATTR.sagaId]: sagaId, [ATTR.sagaType]: sagaType } }, parent);
    return this.#inputSpan(span, sagaId, sagaType);
  }

  #inputSpan(span: Span, sagaId: string, sagaType: string): InputSpan {
    const tracer = this.tracer;
    const parent = trace.setSpan(ROOT_CONTEXT, span);
    let ended = false;
    return {
      commandHeaders(c) {
        const step = c.headers[STEP_HEADERS.step];
        const phase = c.headers[STEP_HEADERS.phase];
        const attempt = c.headers[STEP_HEADERS.attempt];
        const attributes: Attributes = { [ATTR.sagaId]: sagaId, [ATTR.sagaType]: sagaType, [ATTR.messageId]: c.id, [ATTR.messageType]: c.type, [ATTR.operation]: 'send' };
        if (step !== undefined) attributes[ATTR.step] = step;
        if (phase !== undefined) attributes[ATTR.phase] = phase;
        if (attempt !== undefined) attributes[ATTR.attempt] = Number(attempt);
        if (c.topic !== undefined) attributes[ATTR.destination] = c.topic;
        const name = step === undefined ? `send ${c.type}` : `${phase === 'compensation' ? 'compensate' : 'step'} ${step}`;
        const send = tracer.startSpan(name, { kind: SpanKind.PRODUCER, attributes }, parent);
        // The send itself is the outbox write; the span ends at once and the participant's span is its child.
        send.end();
        return { ...c.headers, ...traceHeaders(send.spanContext()) };
      },
      decision(d) {
        if (d.code) span.setAttribute(ATTR.code, d.code);
        if (d.outcome === 'rejected') span.setStatus({ code: SpanStatusCode.ERROR, message: d.message ?? d.code ?? 'rejected' });
        for (const e of d.events) {
          const attrs = eventAttributes(e.payload);
          const name = e.type === 'SagaStepFailed' && e.payload.willRetry === true ? 'retry scheduled' : (EVENT_NAMES[e.type] ?? e.type);
          span.addEvent(name, attrs);
          if (e.type === 'SagaStepFailed' && /no reply within|timed out/i.test(String(e.payload.error ?? ''))) span.addEvent('step timed out', attrs);
          if (e.type === 'SagaFailed' || (e.type === 'SagaStepFailed' && e.payload.willRetry !== true)) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: String(e.payload.error ?? e.payload.reason ?? e.type).slice(0, 500) });
          }
        }
      },
      end(error) {
        if (ended) return;
        ended = true;
        if (error !== undefined) fail(span, error);
        span.end();
      },
    };
  }

  /** A participant handling one command: child of the command's span (or of the saga root). */
  participantMessage(participant: string, consumer: string, env: Envelope): HandlerSpan {
    const { parent, links } = env.sagaId ? this.#sagaParent(env.sagaId, env.headers) : { parent: this.#foreignParent(env.headers), links: [] };
    const span = this.tracer.startSpan(
      `${participant} handle ${env.type}`,
      { kind: SpanKind.CONSUMER, links, attributes: { ...envelopeAttributes(env), [ATTR.consumer]: consumer, [ATTR.operation]: 'process' } },
      parent,
    );
    let ended = false;
    return {
      headers: () => traceHeaders(span.spanContext()),
      end(error) {
        if (ended) return;
        ended = true;
        if (error !== undefined) fail(span, error);
        span.end();
      },
    };
  }

  #foreignParent(headers: Readonly<Record<string, string>> | undefined): Context {
    const remote = extractSpanContext(headers);
    return remote ? trace.setSpanContext(ROOT_CONTEXT, remote) : ROOT_CONTEXT;
  }

  /** A batch's Postgres transaction: its own trace, linked to every message it carried. */
  transaction(consumer: string, envelopes: readonly Envelope[]): TransactionSpan {
    const links: Link[] = [];
    for (const env of envelopes) {
      const sc = extractSpanContext(env.headers) ?? (env.sagaId ? sagaRootContext(env.sagaId) : undefined);
      if (sc) links.push({ context: sc, attributes: { [ATTR.messageId]: env.id } });
    }
    const span = this.tracer.startSpan(`transaction ${consumer}`, { kind: SpanKind.INTERNAL, root: true, links, attributes: { [ATTR.consumer]: consumer, [ATTR.batchCount]: envelopes.length, 'db.system.name': 'postgresql' } }, ROOT_CONTEXT);
    return {
      end(error) {
        if (error !== undefined) fail(span, error);
        span.end();
      },
    };
  }
}
