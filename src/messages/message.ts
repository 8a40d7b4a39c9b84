import type { z } from 'zod';
import { DefinitionError } from '../errors.js';

/**
 * A message type: its name, the zod schema of its payload, and (for commands and saga start
 * messages) the topic it is sent to. Replies carry no topic: a participant sends them to the
 * `replyTo` topic of the command it answers, so one participant can serve many sagas.
 */
export interface MessageDefinition<S extends z.ZodType = z.ZodType, T extends string = string> {
  readonly type: T;
  readonly schema: S;
  /** Destination topic. Required for commands and saga start messages; omitted for replies. */
  readonly topic: string | undefined;
  /** Major schema version; a message with another major is refused with UNSUPPORTED_VERSION. */
  readonly version: number;
}

export type PayloadOf<M> = M extends MessageDefinition<infer S> ? z.output<S> : never;
export type InputOf<M> = M extends MessageDefinition<infer S> ? z.input<S> : never;

const TYPE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const TOPIC_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/;

export function defineMessage<const T extends string, S extends z.ZodType>(def: {
  type: T;
  schema: S;
  topic?: string;
  version?: number;
}): MessageDefinition<S, T> {
  if (!TYPE_NAME.test(def.type)) throw new DefinitionError(`invalid message type name: ${JSON.stringify(def.type)}`);
  if (def.topic !== undefined && !TOPIC_NAME.test(def.topic)) {
    throw new DefinitionError(`invalid topic name for ${def.type}: ${JSON.stringify(def.topic)}`);
  }
  const version = def.version ?? 1;
  if (!Number.isInteger(version) || version < 1) throw new DefinitionError(`invalid version for ${def.type}: ${version}`);
  return Object.freeze({ type: def.type, schema: def.schema, topic: def.topic, version });
}

/** type -> definition, built once per worker; duplicates with different schemas are an error. */
export class MessageRegistry {
  readonly #byType = new Map<string, MessageDefinition>();

  constructor(defs: Iterable<MessageDefinition> = []) {
    for (const d of defs) this.add(d);
  }

  add(def: MessageDefinition): void {
    const existing = this.#byType.get(def.type);
    if (existing && existing !== def) {
      if (existing.schema !== def.schema || existing.topic !== def.topic || existing.version !== def.version) {
        throw new DefinitionError(`message type ${def.type} is defined twice with different schemas or topics`);
      }
      return;
    }
    this.#byType.set(def.type, def);
  }

  get(type: string): MessageDefinition | undefined {
    return this.#byType.get(type);
  }

  has(type: string): boolean {
    return this.#byType.has(type);
  }

  types(): string[] {
    return [...this.#byType.keys()].sort();
  }

  all(): MessageDefinition[] {
    return [...this.#byType.values()];
  }
}
