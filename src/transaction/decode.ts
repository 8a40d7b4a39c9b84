import { PermanentError } from '../errors.js';
import { meaningDigest, parsePayload, type Envelope } from '../messages/envelope.js';
import type { MessageDefinition, MessageRegistry } from '../messages/message.js';
import { decodeMessage, type WireMode } from '../messages/wire.js';
import type { Delivery } from '../transport/contract.js';

/** A delivery that passed every check that needs no database: parsed once, validated once. */
export interface Inbound {
  readonly delivery: Delivery;
  /** Ids in canonical form (lower-case UUIDs): the inbox and every comparison use this spelling. */
  readonly envelope: Envelope;
  readonly def: MessageDefinition;
  readonly payload: unknown;
  /** Digest of the message's meaning (not its bytes): the inbox tells duplicates from ID_CONFLICT by it. */
  readonly digest: Buffer;
  readonly mode: WireMode;
}

/** Throws a PermanentError with the reason code for anything that can never be processed. */
export function decodeDelivery(delivery: Delivery, registry: MessageRegistry, maxBytes: number): Inbound {
  const { envelope, mode } = decodeMessage(delivery.body, delivery.headers, maxBytes);
  const def = registry.get(envelope.type);
  if (!def) throw new PermanentError('UNKNOWN_TYPE', `no handler here for message type ${envelope.type}`);
  const payload = parsePayload(def, envelope);
  return { delivery, envelope, def, payload, digest: meaningDigest(envelope), mode };
}
