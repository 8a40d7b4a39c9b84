import type { Envelope } from '../messages/envelope.js';
import type { InputOf, MessageDefinition, PayloadOf } from '../messages/message.js';
import { reply, type BatchCommandHandler, type ParticipantDefinition, type Reply } from '../participant/definition.js';
import type { SagaflowModule } from '../module.js';

/** A command as a script sees it. */
export interface ScriptedCommand<P = unknown> {
  readonly type: string;
  readonly payload: P;
  readonly envelope: Envelope;
  /** 1 for the first delivery of this command type to this saga in this kit, 2 for the next, ... */
  readonly attempt: number;
}

/**
 * What a faked participant does with one command: return a reply (success or failure), return
 * nothing (no reply: the step waits for its timeout), or throw (the delivery fails, is retried and
 * then dead-lettered, as a crashing participant's would be).
 */
export type Script<P = unknown> = (command: ScriptedCommand<P>) => Reply | void | Promise<Reply | void>;

/** Answers every command with `message`; `payload` may be computed from the command. */
export function replyWith<M extends MessageDefinition, P = any>(message: M, payload: InputOf<M> | ((command: ScriptedCommand<P>) => InputOf<M>)): Script<P> {
  return (command) => reply(message, typeof payload === 'function' ? (payload as (c: ScriptedCommand<P>) => InputOf<M>)(command) : payload);
}

/** Never answers: the saga step waits for its timeout (advance the clock to fire it). */
export function noReply(): Script {
  return () => undefined;
}

/** Throws on every delivery: the participant "crashes" on this command. */
export function throws(message = 'scripted failure'): Script {
  return () => {
    throw new Error(message);
  };
}

/** Runs `scripts` one after the other per command (the last one repeats): fail twice, then succeed. */
export function inTurn<P = unknown>(...scripts: Script<P>[]): Script<P> {
  return (command) => scripts[Math.min(command.attempt, scripts.length) - 1]!(command);
}

export interface DeliveredCommand {
  readonly type: string;
  readonly sagaId: string | undefined;
  readonly payload: unknown;
  /** 'script' when a test script answered it, 'real' when the module's own participant did. */
  readonly by: 'script' | 'real';
}

/**
 * The participants the kit's worker runs: the module's own (mode 'real'), with any command type a
 * test scripted answered by its script instead; in mode 'scripted' the module's participants are
 * left out and every command a saga sends is answered by a script (none set: no reply).
 */
export class ScriptBook {
  readonly #scripts = new Map<string, Script<any>>();
  readonly #attempts = new Map<string, number>();
  readonly delivered: DeliveredCommand[] = [];

  set<M extends MessageDefinition>(command: M, script: Script<PayloadOf<M>>): void {
    this.#scripts.set(command.type, script as Script<any>);
  }

  clear(): void {
    this.#scripts.clear();
    this.#attempts.clear();
    this.delivered.length = 0;
  }

  #wrap(type: string, real: BatchCommandHandler<unknown> | undefined): BatchCommandHandler<unknown> {
    return async ({ items, tx }) => {
      const script = this.#scripts.get(type);
      if (!script && real) {
        for (const i of items) this.delivered.push({ type, sagaId: i.envelope.sagaId, payload: i.payload, by: 'real' });
        return real({ items, tx });
      }
      const out: (Reply | void)[] = [];
      for (const i of items) {
        const key = `${i.envelope.sagaId ?? ''}:${type}`;
        const attempt = (this.#attempts.get(key) ?? 0) + 1;
        this.#attempts.set(key, attempt);
        this.delivered.push({ type, sagaId: i.envelope.sagaId, payload: i.payload, by: 'script' });
        out.push(script ? await script({ type, payload: i.payload, envelope: i.envelope, attempt }) : undefined);
      }
      return out;
    };
  }

  participants(mod: SagaflowModule, mode: 'real' | 'scripted'): ParticipantDefinition[] {
    const handled = new Set<string>();
    const out: ParticipantDefinition[] = [];
    if (mode === 'real') {
      for (const p of mod.participants ?? []) {
        const handlers = new Map([...p.handlers].map(([type, h]) => [type, { message: h.message, handle: this.#wrap(type, h.handle) }]));
        for (const type of handlers.keys()) handled.add(type);
        out.push({ ...p, handlers });
      }
    }
    // Every command of the module's sagas that no participant handles gets a scripted one, on the
    // command's topic, which may answer with any reply the saga expects.
    const byTopic = new Map<string, { commands: Map<string, MessageDefinition>; replies: Map<string, MessageDefinition> }>();
    for (const saga of mod.sagas ?? []) {
      for (const step of saga.steps) {
        for (const action of [step.forward, step.compensation]) {
          const cmd = action?.command;
          if (!action || !cmd?.topic || handled.has(cmd.type)) continue;
          const entry = byTopic.get(cmd.topic) ?? { commands: new Map(), replies: new Map() };
          entry.commands.set(cmd.type, cmd);
          for (const m of action.messages) if (m.type !== cmd.type) entry.replies.set(m.type, m);
          byTopic.set(cmd.topic, entry);
        }
      }
    }
    for (const [topic, e] of byTopic) {
      const name = `scripted-${topic.replace(/[^a-z0-9_-]/gi, '-').toLowerCase()}`.slice(0, 63);
      out.push({
        name,
        consumer: `participant.${name}`,
        topics: [topic],
        handlers: new Map([...e.commands].map(([type, message]) => [type, { message, handle: this.#wrap(type, undefined) }])),
        replies: [...e.replies.values()],
      });
    }
    return out;
  }
}
