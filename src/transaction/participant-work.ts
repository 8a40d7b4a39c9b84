import { derivedId } from '../ids.js';
import { PermanentError } from '../errors.js';
import type { InboxStore } from '../inbox/store.js';
import { describeIssues, type Envelope } from '../messages/envelope.js';
import type { WireFormat } from '../messages/wire.js';
import { outgoing } from './outgoing.js';
import type { Logger } from '../log.js';
import type { OutboxStore } from '../outbox/store.js';
import type { SagaStore } from '../saga/store.js';
import { STEP_HEADERS } from '../saga/state.js';
import type { OutgoingMessage } from '../transport/contract.js';
import { writeBatch } from './write.js';
import { claimBatch } from './claim.js';
import type { Inbound } from './decode.js';
import type { ParticipantDefinition, Reply } from '../participant/definition.js';
import type { Work } from './run.js';
import { APPLIED } from './outcome.js';
import { passTraceHeaders, type HandlerSpan, type SagaTracing } from '../observability/tracing.js';

export interface ParticipantConsumerDeps {
  readonly participant: ParticipantDefinition;
  readonly wireFormat: WireFormat;
  readonly inbox: InboxStore;
  readonly outbox: OutboxStore;
  readonly sagas: SagaStore;
  readonly graceMs: number;
  readonly logger: Logger;
  readonly onHandled: (count: number) => void;
  readonly tracing?: SagaTracing | undefined;
}

const ECHOED = Object.values(STEP_HEADERS);

/** Reply ids derive from the command id: a re-run of the same command yields the same reply id. */
export function replyId(commandId: string, participant: string): string {
  return derivedId(`${commandId}:reply:${participant}`);
}

/**
 * The reply a participant sends for `r` to command `env` (exported for the wire-protocol examples).
 * It continues the command's trace: from this participant's span when tracing is on here, else
 * with the command's trace context passed on as it came.
 */
export function buildReply(participant: string, env: Envelope, r: Reply, format: WireFormat, logger: Logger, span?: HandlerSpan): OutgoingMessage | undefined {
  const parsed = r.message.schema.safeParse(r.payload);
  if (!parsed.success) {
    throw new PermanentError('SCHEMA_INVALID', `participant ${participant} built an invalid ${r.message.type}: ${describeIssues(parsed.error)}`);
  }
  if (!env.replyTo) {
    logger.warn({ messageId: env.id, type: env.type }, 'command has no replyTo; the reply is dropped');
    return undefined;
  }
  const headers = env.headers ?? {};
  const echoed: Record<string, string> = {};
  for (const k of ECHOED) if (headers[k] !== undefined) echoed[k] = headers[k];
  if (span) Object.assign(echoed, span.headers());
  else passTraceHeaders(headers, echoed);
  const reply: Envelope = {
    id: replyId(env.id, participant),
    type: r.message.type,
    schemaVersion: r.message.version,
    tenantId: env.tenantId,
    correlationId: env.correlationId,
    causationId: env.id,
    sagaId: env.sagaId,
    source: `/sagaflow/participants/${participant}`,
    occurredAt: new Date().toISOString(),
    headers: echoed,
    payload: parsed.data,
  };
  return outgoing(env.replyTo, env.sagaId ?? env.correlationId, reply, format);
}

/** A participant's transaction over a batch: inbox claim + the handlers' business writes + outbox replies. */
export function participantWork(deps: ParticipantConsumerDeps): Work<Inbound> {
  const { participant, logger } = deps;
  return async (tx, items, deletes) => {
    const { outcomes, claimed } = await claimBatch(tx, deps.inbox, participant.consumer, items, logger);
    const messages: OutgoingMessage[] = [];
    // Claimed commands grouped by type, in order of first appearance. Reordering across types is
    // safe: a saga has one command in flight at a time, so two commands of one batch belong to
    // different sagas (or are retries of one step, which participants treat idempotently anyway).
    const groups = new Map<string, Inbound[]>();
    for (const { index, item } of claimed) {
      // Applied or nothing: a handler that throws aborts the whole transaction (and its outcomes).
      outcomes.set(index, APPLIED);
      const list = groups.get(item.envelope.type) ?? [];
      list.push(item);
      groups.set(item.envelope.type, list);
    }
    let handled = 0;
    for (const [type, group] of groups) {
      const h = participant.handlers.get(type)!;
      const spans = deps.tracing ? group.map((item) => deps.tracing!.participantMessage(participant.name, participant.consumer, item.envelope)) : undefined;
      // A throw aborts the batch's transaction; the batch is then re-run one message at a time.
      const replies = await h.handle({
        tx,
        items: group.map((item) => {
          const env = item.envelope;
          const headers = env.headers ?? {};
          return {
            payload: item.payload,
            envelope: env,
            idempotencyKey: `${env.sagaId ?? env.correlationId}:${headers[STEP_HEADERS.step] ?? env.type}:${headers[STEP_HEADERS.phase] ?? 'forward'}`,
          };
        }),
      }).catch((err: unknown) => {
        for (const s of spans ?? []) s.end(err);
        throw err;
      });
      if (replies.length !== group.length) {
        throw new PermanentError('HANDLER_ERROR', `participant ${participant.name}: the ${type} batch handler returned ${replies.length} replies for ${group.length} commands`);
      }
      handled += group.length;
      try {
        group.forEach((item, k) => {
          const r = replies[k];
          const out = r ? buildReply(participant.name, item.envelope, r, deps.wireFormat, logger, spans?.[k]) : undefined;
          spans?.[k]?.end();
          if (out) messages.push(out);
        });
      } catch (err) {
        for (const s of spans ?? []) s.end(err);
        throw err;
      }
    }
    // The last statement: COMMIT rides with it (one round trip fewer per batch).
    const written = await writeBatch(tx, { sagas: deps.sagas, outbox: deps.outbox, graceMs: deps.graceMs }, { sagas: [], steps: [], messages, deletes }, { last: true });
    return { outcomes: outcomes.all(), written, committed: () => deps.onHandled(handled) };
  };
}
