import { PermanentError } from '../errors.js';
import { bodyDigest, decodeEnvelope, parsePayload, type Envelope } from '../messages/envelope.js';
import type { MessageDefinition, MessageRegistry } from '../messages/message.js';
import type { Delivery } from '../transport/contract.js';

/** A delivery that passed every check that needs no database: parsed once, validated once. */
export interface Inbound {
  readonly delivery: Delivery;
  readonly envelope: Envelope;
  readonly def: MessageDefinition;
  readonly payload: unknown;
  readonly digest: Buffer;
}

const JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);

/** Throws a PermanentError with the reason code for anything that can never be processed. */
export function decodeDelivery(delivery: Delivery, registry: MessageRegistry, maxBytes: number): Inbound {
  const contentType = delivery.headers['content-type'];
  if (contentType !== undefined && !JSON_TYPES.has(contentType.toLowerCase())) {
    throw new PermanentError('UNSUPPORTED_CONTENT_TYPE', `content type ${contentType.slice(0, 100)} is not supported (application/json only)`);
  }
  const envelope = decodeEnvelope(delivery.body, maxBytes);
  const def = registry.get(envelope.type);
  if (!def) throw new PermanentError('UNKNOWN_TYPE', `no handler here for message type ${envelope.type}`);
  const payload = parsePayload(def, envelope);
  return { delivery, envelope, def, payload, digest: bodyDigest(delivery.body) };
}
