import type { ConsumeMessage, Options } from 'amqplib';
import { DEAD_LETTER_TOPIC, H, type Delivery } from '../contract.js';
import type { Names } from './names.js';

/**
 * The topic of a message that came back from a retry queue: it arrives through the default
 * exchange, so `fields.exchange` no longer says where it was first published. Internal to this
 * transport; removed from the headers handlers see.
 */
export const TOPIC_HEADER = 'x-sagaflow-topic';

/**
 * The dead-letter recorder's own attempt counter. In a dead letter, H.attempt is DATA (the attempt
 * at which the original failed) and must reach the recorder unchanged, so the recorder's retries
 * count in this internal header instead. Removed from the headers handlers see.
 */
export const RECORDER_ATTEMPT_HEADER = 'x-sagaflow-recorder-attempt';

/** Headers the broker owns: copying them onto a republished message would corrupt the copy's counts. */
const BROKER_HEADERS = new Set(['x-delivery-count', 'x-death', 'x-first-death-reason', 'x-first-death-queue', 'x-first-death-exchange']);

interface DeathRecord {
  reason?: unknown;
  queue?: unknown;
  exchange?: unknown;
  time?: unknown;
}

/** AMQP header tables hold any type; the contract's headers are strings. Tables and arrays (x-death) are left out. */
function headerString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return undefined;
}

export interface DeliveryContext {
  readonly names: Names;
  /** The sagaflow consumer name (no namespace). */
  readonly consumer: string;
  readonly isDeadLetterQueue: boolean;
}

export function toDelivery(msg: ConsumeMessage, ctx: DeliveryContext): Delivery {
  const props = msg.properties;
  const raw = (props.headers ?? {}) as Record<string, unknown>;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === TOPIC_HEADER || k === RECORDER_ATTEMPT_HEADER) continue;
    const s = headerString(v);
    if (s !== undefined) headers[k] = s;
  }
  if (typeof props.contentType === 'string' && props.contentType !== '') headers['content-type'] = props.contentType;
  const retriedFrom = headerString(raw[TOPIC_HEADER]);
  const topic = msg.fields.exchange !== '' ? ctx.names.strip(msg.fields.exchange) : (retriedFrom ?? ctx.consumer);

  // Attempt: our own counter (carried through retry queues), or the quorum queue's count of
  // redeliveries of this very message (crash, lost channel), whichever is larger.
  const counter = ctx.isDeadLetterQueue ? headerString(raw[RECORDER_ATTEMPT_HEADER]) : headers[H.attempt];
  let attempt = Number.parseInt(counter ?? '1', 10);
  if (!Number.isFinite(attempt) || attempt < 1) attempt = 1;
  const deliveryCount = raw['x-delivery-count'];
  if (typeof deliveryCount === 'number' && deliveryCount + 1 > attempt) attempt = deliveryCount + 1;

  if (ctx.isDeadLetterQueue && topic === DEAD_LETTER_TOPIC && headers[H.reason] === undefined) {
    fillBrokerDeadLetter(headers, raw, retriedFrom, ctx.names);
  }

  return {
    topic,
    key: headers[H.key],
    id: (typeof props.messageId === 'string' ? props.messageId : undefined) ?? headers[H.messageId],
    type: (typeof props.type === 'string' ? props.type : undefined) ?? headers[H.type],
    body: msg.content,
    headers,
    attempt,
    redelivered: msg.fields.redelivered,
  };
}

/**
 * A message the BROKER dead-lettered (quorum x-delivery-limit reached, or rejected/expired by
 * someone else) carries no sagaflow reason: derive it from the death record so the recorder reads
 * it like ours. `x-death` is ordered most recent first; `x-first-death-*` would name the retry queue
 * for a message that had been retried before, so it is only the fallback.
 */
function fillBrokerDeadLetter(headers: Record<string, string>, raw: Record<string, unknown>, retriedFrom: string | undefined, names: Names): void {
  const deaths = raw['x-death'];
  const last: DeathRecord = Array.isArray(deaths) && deaths.length > 0 && typeof deaths[0] === 'object' && deaths[0] !== null ? (deaths[0] as DeathRecord) : {};
  const reason = headerString(last.reason) ?? headerString(raw['x-first-death-reason']) ?? 'unknown';
  const queue = headerString(last.queue) ?? headerString(raw['x-first-death-queue']);
  const exchange = headerString(last.exchange) ?? headerString(raw['x-first-death-exchange']);
  headers[H.reason] = reason === 'delivery_limit' ? 'DELIVERY_LIMIT' : reason.toUpperCase();
  if (queue !== undefined) headers[H.consumer] = names.strip(queue);
  const original = retriedFrom ?? (exchange !== undefined && exchange !== '' ? names.strip(exchange) : undefined);
  if (original !== undefined) headers[H.originalTopic] = original;
  headers[H.error] ??= `dead-lettered by the broker: ${reason}`;
  const t = last.time as { value?: unknown } | undefined;
  if (headers[H.deadLetteredAt] === undefined && typeof t?.value === 'number') {
    headers[H.deadLetteredAt] = new Date(t.value * 1000).toISOString();
  }
}

/** AMQP properties for a copy of `d` (retry or dead letter) with `headers`. */
export function republishOptions(d: Delivery, headers: Record<string, string>, extra: Record<string, string> = {}): Options.Publish {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!BROKER_HEADERS.has(k) && k !== 'content-type') out[k] = v;
  Object.assign(out, extra);
  return {
    persistent: true,
    mandatory: true,
    contentType: headers['content-type'] ?? 'application/json',
    ...(d.id !== undefined ? { messageId: d.id } : {}),
    ...(d.type !== undefined ? { type: d.type } : {}),
    headers: out,
  };
}
