import { randomUUID } from 'node:crypto';
import type { Queryable } from './db/db.js';
import { PermanentError } from './errors.js';
import { describeIssues, type Envelope } from './messages/envelope.js';
import { DEFAULT_WIRE_FORMAT, encodeMessage, type WireFormat } from './messages/wire.js';
import type { InputOf, MessageDefinition } from './messages/message.js';
import { OutboxStore } from './outbox/store.js';
import type { SagaDefinition } from './saga/definition.js';
import { sagaIdFor } from './saga/engine.js';
import type { OutgoingMessage, Publisher } from './transport/contract.js';

export interface SendOptions {
  /** Write through the outbox inside this transaction: the message exists iff the caller commits. */
  readonly tx?: Queryable;
  readonly messageId?: string;
  readonly sagaId?: string;
  readonly tenantId?: string;
  readonly correlationId?: string;
  readonly causationId?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface SagaflowClient {
  /**
   * Starts a saga by sending its start message. With `tx`, the start commits or rolls back with the
   * caller's own rows (transactional outbox); without, it is published at once with a broker confirm.
   * The saga id is known before anything is sent, so the caller can store it.
   */
  startSaga<S extends SagaDefinition<any, any>>(
    saga: S,
    payload: InputOf<S['start']>,
    opts?: SendOptions,
  ): Promise<{ sagaId: string; messageId: string }>;
  send<M extends MessageDefinition>(message: M, payload: InputOf<M>, opts?: SendOptions): Promise<{ messageId: string }>;
  /** Builds the wire message without sending it (bulk publishing, tests). */
  build<M extends MessageDefinition>(message: M, payload: InputOf<M>, opts?: SendOptions): OutgoingMessage;
}

export function createClient(deps: {
  schema?: string;
  publisher?: Publisher;
  db?: Queryable;
  defaultTenant?: string;
  /** Default cloudevents; legacy while workers of the previous release still read this topic. */
  wireFormat?: WireFormat;
}): SagaflowClient {
  const outbox = new OutboxStore(deps.schema ?? 'sagaflow');
  const tenant = deps.defaultTenant ?? 'default';

  const build: SagaflowClient['build'] = (message, payload, opts = {}) => {
    if (!message.topic) throw new PermanentError('UNKNOWN_TYPE', `${message.type} has no topic; replies cannot be sent directly`);
    const parsed = message.schema.safeParse(payload);
    if (!parsed.success) throw new PermanentError('SCHEMA_INVALID', `${message.type}: ${describeIssues(parsed.error)}`);
    const id = opts.messageId ?? randomUUID();
    const env: Envelope = {
      id,
      type: message.type,
      schemaVersion: message.version,
      tenantId: opts.tenantId ?? tenant,
      correlationId: opts.correlationId ?? opts.sagaId ?? id,
      ...(opts.causationId ? { causationId: opts.causationId } : {}),
      ...(opts.sagaId ? { sagaId: opts.sagaId } : {}),
      source: '/sagaflow/client',
      occurredAt: new Date().toISOString(),
      ...(opts.headers ? { headers: opts.headers } : {}),
      payload: parsed.data,
    };
    const encoded = encodeMessage(env, deps.wireFormat ?? DEFAULT_WIRE_FORMAT);
    return { topic: message.topic, key: opts.sagaId ?? id, id, type: message.type, body: encoded.body, headers: encoded.headers };
  };

  async function deliver(msg: OutgoingMessage, tx: Queryable | undefined): Promise<void> {
    if (tx) return outbox.enqueue(tx, [msg]);
    if (deps.publisher) return deps.publisher.publish([msg]);
    if (deps.db) return outbox.enqueue(deps.db, [msg]);
    throw new Error('sagaflow client: give it a publisher or a db, or pass opts.tx');
  }

  return {
    build,
    async send(message, payload, opts = {}) {
      const msg = build(message, payload, opts);
      await deliver(msg, opts.tx);
      return { messageId: msg.id };
    },
    async startSaga(saga, payload, opts = {}) {
      const messageId = opts.messageId ?? randomUUID();
      const sagaId = opts.sagaId ?? sagaIdFor(messageId);
      const msg = build(saga.start, payload as never, { ...opts, messageId, sagaId });
      await deliver(msg, opts.tx);
      return { sagaId, messageId };
    },
  };
}
