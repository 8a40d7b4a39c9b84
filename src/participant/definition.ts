import type { Queryable } from '../db/db.js';
import type { Envelope } from '../messages/envelope.js';
import type { InputOf, MessageDefinition, PayloadOf } from '../messages/message.js';
import { DefinitionError } from '../errors.js';

/**
 * Participants are the services that carry out commands (`ReserveStock` -> `StockReserved` or
 * `StockRejected`). A handler gets the worker's transaction: its business writes commit together
 * with the inbox claim and the outbox reply, so a participant written this way is idempotent for
 * free. A handler that throws is retried (then dead-lettered); a business "no" is a reply, not a throw.
 */
export interface Reply {
  readonly message: MessageDefinition;
  readonly payload: unknown;
}

export function reply<M extends MessageDefinition>(message: M, payload: InputOf<M>): Reply {
  return { message, payload };
}

export interface HandlerContext<P> {
  readonly payload: P;
  readonly envelope: Envelope;
  readonly tx: Queryable;
  /** `sagaId:step:phase`: the same for every attempt of one step, for participants that call outside systems. */
  readonly idempotencyKey: string;
}

export type CommandHandler<P> = (ctx: HandlerContext<P>) => Promise<Reply | void> | Reply | void;

/** One command of a batch, as a batch handler sees it. */
export interface BatchItem<P> {
  readonly payload: P;
  readonly envelope: Envelope;
  readonly idempotencyKey: string;
}

/**
 * Handles many commands of one type in the worker's transaction at once, so a participant can use
 * set-based SQL (one read and one write for the whole batch instead of two per command). Returns
 * one reply (or nothing) per item, in order. A throw fails the batch; the worker then re-runs it
 * one command at a time to isolate the bad one.
 */
export type BatchCommandHandler<P> = (ctx: { readonly items: readonly BatchItem<P>[]; readonly tx: Queryable }) => Promise<readonly (Reply | void)[]>;

export interface ParticipantDefinition {
  readonly name: string;
  /** Consumer (queue / group) name. */
  readonly consumer: string;
  readonly topics: readonly string[];
  readonly handlers: ReadonlyMap<string, { readonly message: MessageDefinition; readonly handle: BatchCommandHandler<unknown> }>;
  /** Reply types this participant may send (validated before they are written). */
  readonly replies: readonly MessageDefinition[];
}

const NAME = /^[a-z][a-z0-9_-]{0,62}$/;

class ParticipantBuilder {
  readonly #handlers = new Map<string, { message: MessageDefinition; handle: BatchCommandHandler<unknown> }>();
  readonly #replies = new Map<string, MessageDefinition>();
  constructor(private readonly name: string) {}

  /** Handles command `message`; `replies` lists what the handler may answer with. */
  on<M extends MessageDefinition>(message: M, handle: CommandHandler<PayloadOf<M>>, replies: readonly MessageDefinition[] = []): this {
    const one = handle as CommandHandler<unknown>;
    // A per-command handler is a batch handler that takes the commands one after the other.
    return this.#add(message, replies, async ({ items, tx }) => {
      const out: (Reply | void)[] = [];
      for (const item of items) out.push(await one({ ...item, tx }));
      return out;
    });
  }

  /** Handles command `message` a batch at a time (set-based SQL); see BatchCommandHandler. */
  onBatch<M extends MessageDefinition>(message: M, handle: BatchCommandHandler<PayloadOf<M>>, replies: readonly MessageDefinition[] = []): this {
    return this.#add(message, replies, handle as BatchCommandHandler<unknown>);
  }

  #add(message: MessageDefinition, replies: readonly MessageDefinition[], handle: BatchCommandHandler<unknown>): this {
    if (!message.topic) throw new DefinitionError(`participant ${this.name}: command ${message.type} must name a topic`);
    if (this.#handlers.has(message.type)) throw new DefinitionError(`participant ${this.name}: ${message.type} is handled twice`);
    this.#handlers.set(message.type, { message, handle });
    for (const r of replies) this.#replies.set(r.type, r);
    return this;
  }

  build(): ParticipantDefinition {
    if (!NAME.test(this.name)) throw new DefinitionError(`invalid participant name ${JSON.stringify(this.name)}`);
    if (this.#handlers.size === 0) throw new DefinitionError(`participant ${this.name} handles no command`);
    const topics = [...new Set([...this.#handlers.values()].map((h) => h.message.topic!))].sort();
    return Object.freeze({
      name: this.name,
      consumer: `participant.${this.name}`,
      topics,
      handlers: new Map(this.#handlers),
      replies: [...this.#replies.values()],
    });
  }
}

export function defineParticipant(name: string): ParticipantBuilder {
  return new ParticipantBuilder(name);
}
