import { PermanentError } from '../errors.js';
import { binaryAttributes, CE_STRUCTURED, fromCloudEvent, isJsonContentType, isStructuredContentType, toCloudEvent } from './cloudevents.js';
import { assertStorable, encodeLegacyEnvelope, fromLegacy, parseJsonBody, DEFAULT_MAX_MESSAGE_BYTES, type Envelope } from './envelope.js';

/**
 * How messages are written. `cloudevents` (default): CloudEvents 1.0 structured mode. `legacy`: the
 * envelope of sagaflow 0.1, for a rolling deploy while workers that only read it still run. Both
 * are always read.
 */
export type WireFormat = 'cloudevents' | 'legacy';
export const WIRE_FORMATS: readonly WireFormat[] = ['cloudevents', 'legacy'];
export const DEFAULT_WIRE_FORMAT: WireFormat = 'cloudevents';

/** Content type of a legacy body. */
export const LEGACY_CONTENT_TYPE = 'application/json';
/** Header every transport maps onto the broker's own content-type field (AMQP property, Kafka header). */
export const CONTENT_TYPE_HEADER = 'content-type';
export const STRUCTURED_CONTENT_TYPE = `${CE_STRUCTURED}; charset=utf-8`;

export interface EncodedMessage {
  readonly body: Buffer;
  /** Transport headers the body needs (its content type). */
  readonly headers: Readonly<Record<string, string>>;
}

export function encodeMessage(env: Envelope, format: WireFormat): EncodedMessage {
  if (format === 'legacy') return { body: encodeLegacyEnvelope(env), headers: { [CONTENT_TYPE_HEADER]: LEGACY_CONTENT_TYPE } };
  return { body: Buffer.from(JSON.stringify(toCloudEvent(env)), 'utf8'), headers: { [CONTENT_TYPE_HEADER]: STRUCTURED_CONTENT_TYPE } };
}

export type WireMode = 'structured' | 'binary' | 'legacy';

/**
 * Bytes and transport headers -> envelope, whichever of the three forms it came in:
 * - binary CloudEvent: `ce_specversion` / `cloudEvents_specversion` header, the body is the data;
 * - structured CloudEvent: content type application/cloudevents+json, or a JSON object with
 *   `specversion` (some producers send it as application/json);
 * - legacy sagaflow envelope: any other JSON object.
 * Every failure is a PermanentError with its reason code (a dead letter, never a retry).
 */
export function decodeMessage(
  body: Buffer | Uint8Array | null | undefined,
  headers: Readonly<Record<string, string>> = {},
  maxBytes = DEFAULT_MAX_MESSAGE_BYTES,
): { envelope: Envelope; mode: WireMode } {
  const binary = binaryAttributes(headers);
  const contentType = headers[CONTENT_TYPE_HEADER];
  if (binary) {
    if (binary.datacontenttype !== undefined && !isJsonContentType(binary.datacontenttype)) {
      throw new PermanentError('UNSUPPORTED_CONTENT_TYPE', `content type ${binary.datacontenttype.slice(0, 100)} is not supported (JSON data only)`);
    }
    const { text, value } = parseJsonBody(body, maxBytes);
    assertStorable(text, value, binary);
    return { envelope: fromCloudEvent({ ...binary, data: value }), mode: 'binary' };
  }
  if (contentType !== undefined && !isStructuredContentType(contentType) && !isJsonContentType(contentType)) {
    throw new PermanentError('UNSUPPORTED_CONTENT_TYPE', `content type ${contentType.slice(0, 100)} is not supported (JSON only)`);
  }
  const { text, value } = parseJsonBody(body, maxBytes);
  assertStorable(text, value);
  if (isStructuredContentType(contentType) || (value !== null && typeof value === 'object' && 'specversion' in value)) {
    return { envelope: fromCloudEvent(value), mode: 'structured' };
  }
  return { envelope: fromLegacy(value), mode: 'legacy' };
}

/** Body alone (no transport headers): structured CloudEvent or legacy envelope. */
export function decodeEnvelope(body: Buffer | Uint8Array | null | undefined, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): Envelope {
  return decodeMessage(body, {}, maxBytes).envelope;
}


/** The body alone (readers recognise either format without headers). */
export function encodeEnvelope(env: Envelope, format: WireFormat = DEFAULT_WIRE_FORMAT): Buffer {
  return encodeMessage(env, format).body;
}
