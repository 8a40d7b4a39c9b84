import type { Envelope } from '../messages/envelope.js';
import { encodeMessage, type WireFormat } from '../messages/wire.js';
import type { OutgoingMessage } from '../transport/contract.js';

/** The outgoing message for an envelope: encoded in `format`, keyed, with its content type header. */
export function outgoing(topic: string, key: string, env: Envelope, format: WireFormat): OutgoingMessage {
  const { body, headers } = encodeMessage(env, format);
  return { topic, key, id: env.id, type: env.type, body, headers };
}
