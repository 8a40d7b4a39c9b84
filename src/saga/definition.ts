import type { Queryable } from '../db/db.js';
import { MessageRegistry, type InputOf, type MessageDefinition, type PayloadOf } from '../messages/message.js';
import { DEFAULT_COMPENSATION_RETRY, DEFAULT_STEP_RETRY, normalizeRetry, type StepRetry } from './retry.js';
import { DefinitionError } from '../errors.js';

/**
 * A saga definition is built once, in code, and never changes while the process runs. Its name,
 * step names and message types are persisted in rows and therefore part of the public API: renaming
 * one strands every in-flight saga that used it (test/unit/persisted-names.test.ts guards them).
 */

type AnyMessage = MessageDefinition;
type Payloads<L extends readonly AnyMessage[]> = PayloadOf<L[number]>;

/** What a local function gets: the saga's data and the worker's transaction, so its writes commit with the step. */
export interface LocalContext<D> {
  readonly sagaId: string;
  readonly data: D;
  readonly tx: Queryable;
  readonly attempt: number;
}

export interface RemoteAction<D, K, C extends AnyMessage, S extends readonly AnyMessage[], F extends readonly AnyMessage[]> {
  /** The command sent to the participant; its definition must name a topic. */
  readonly command: C;
  readonly payload: (data: D, kept: K) => InputOf<C>;
  /** Replies meaning the action succeeded. */
  readonly success: S;
  /** Replies meaning it failed (a business "no"); empty when the participant cannot refuse. */
  readonly failure?: F;
  /** Whether a failure reply is worth another attempt (default: no for steps, yes for compensations). */
  readonly retryFailures?: boolean | ((reply: Payloads<F>) => boolean);
  /**
   * Whether a failure reply is a TECHNICAL failure of the participant (an outage: it trips the
   * circuit breaker) rather than a business refusal (never trips it). Default: every failure reply
   * is a business refusal; timeouts are always technical.
   */
  readonly technicalFailures?: (reply: Payloads<F>) => boolean;
}

export interface StepOptions {
  /** Time allowed for a reply, per attempt, from when the command is sent; on expiry the attempt counts as failed. None by default. */
  readonly timeoutMs?: number;
  readonly retry?: Partial<StepRetry>;
  /**
   * The gate (circuit breaker, rate limit, concurrency limit) this action's command passes: by
   * default the command's topic, i.e. one gate per participant. Name the command type (or any
   * name) to give one command its own breaker.
   */
  readonly gate?: string;
}

export interface RemoteStepSpec<
  D,
  K,
  C extends AnyMessage,
  S extends readonly AnyMessage[],
  F extends readonly AnyMessage[],
  CC extends AnyMessage,
  CS extends readonly AnyMessage[],
  CF extends readonly AnyMessage[],
> extends StepOptions {
  readonly command: C;
  readonly payload: (data: D) => InputOf<C>;
  readonly success: S;
  readonly failure?: F;
  readonly retryFailures?: boolean | ((reply: Payloads<F>) => boolean);
  readonly technicalFailures?: (reply: Payloads<F>) => boolean;
  /** Data from the success reply kept for this step's compensation (shown in the step history). */
  readonly keep?: (reply: Payloads<S>, data: D) => K;
  /** New saga data after success. */
  readonly update?: (data: D, reply: Payloads<S>) => D;
  /** The command that undoes this step; omitted for steps with nothing to undo (reads, checks). */
  readonly compensate?: RemoteAction<D, K, CC, CS, CF> & StepOptions;
  /**
   * What a failure of this step does once its attempts are used up: compensate the completed steps
   * (default) or stop as `failed` for an operator to replay. A function decides per failure, e.g.
   * compensate a business refusal but stop on an outage of the participant.
   */
  readonly onFailure?: FailurePolicy;
}

export interface StepFailure {
  /** The failure reply's type, or undefined for a timeout or a local error. */
  readonly replyType: string | undefined;
  readonly timedOut: boolean;
  readonly error: string;
}

export type FailurePolicy = 'compensate' | 'fail' | ((failure: StepFailure) => 'compensate' | 'fail');

export interface LocalStepSpec<D, K> extends StepOptions {
  /** Runs inside the worker's transaction; a throw is a failed attempt (its writes roll back). */
  readonly run: (ctx: LocalContext<D>) => Promise<K> | K;
  readonly update?: (data: D, result: K) => D;
  readonly compensate?: { readonly run: (ctx: LocalContext<D> & { readonly kept: K }) => Promise<unknown> | unknown } & StepOptions;
  readonly onFailure?: FailurePolicy;
}

/** The normalised, type-erased form the engine works with. */
export interface ActionDef {
  readonly kind: 'remote' | 'local';
  readonly command?: AnyMessage;
  /** Every message definition this action sends or expects (command and replies). */
  readonly messages: readonly AnyMessage[];
  readonly payload?: (data: unknown, kept: unknown) => unknown;
  readonly success: ReadonlySet<string>;
  readonly failure: ReadonlySet<string>;
  readonly retryFailures: (reply: unknown) => boolean;
  /** A failure reply that is an outage of the participant (trips its breaker), not a refusal. */
  readonly technical: (reply: unknown) => boolean;
  /** The gate a remote action's command passes (undefined for local actions). */
  readonly gate: string | undefined;
  readonly run?: (ctx: LocalContext<unknown> & { kept?: unknown }) => Promise<unknown> | unknown;
  readonly timeoutMs: number | undefined;
  readonly retry: StepRetry;
}

export interface StepDef {
  readonly name: string;
  readonly index: number;
  readonly forward: ActionDef;
  readonly compensation: ActionDef | undefined;
  readonly keep: ((reply: unknown, data: unknown) => unknown) | undefined;
  readonly update: ((data: unknown, reply: unknown) => unknown) | undefined;
  readonly onFailure: FailurePolicy;
}

/** What an expired saga deadline does: compensate the completed steps, or stop as `failed` for an operator. */
export type DeadlinePolicy = 'compensate' | 'fail';

export interface SagaDeadline {
  /** Overall time limit from the start, database clock; a start message may set its own (header `sagaflow-deadline-ms`). */
  readonly ms: number | undefined;
  readonly onExpiry: DeadlinePolicy;
}

export interface SagaDefinition<D = unknown, Start extends AnyMessage = AnyMessage> {
  readonly name: string;
  readonly deadline: SagaDeadline;
  readonly version: number;
  readonly start: Start;
  /** Topic of the start message: where the orchestrator listens, and where replies are sent. */
  readonly topic: string;
  /** Consumer (queue / group) name of this saga's orchestrator. */
  readonly consumer: string;
  readonly initialData: (payload: PayloadOf<Start>) => D;
  readonly steps: readonly StepDef[];
  readonly registry: MessageRegistry;
  step(name: string): StepDef | undefined;
  /** phantom, for inference only */
  readonly __data?: D;
}

const NAME = /^[a-z][a-zA-Z0-9_-]{0,62}$/;

class SagaBuilder<D, Start extends AnyMessage> {
  readonly #steps: StepDef[] = [];
  constructor(
    private readonly spec: { name: string; version: number; start: Start; data: (p: PayloadOf<Start>) => D; deadline: SagaDeadline },
  ) {}

  /** A step that sends a command to a participant and waits for its reply. */
  step<
    C extends AnyMessage,
    const S extends readonly AnyMessage[],
    const F extends readonly AnyMessage[] = [],
    K = undefined,
    CC extends AnyMessage = AnyMessage,
    const CS extends readonly AnyMessage[] = readonly AnyMessage[],
    const CF extends readonly AnyMessage[] = [],
  >(name: string, spec: RemoteStepSpec<D, K, C, S, F, CC, CS, CF>): SagaBuilder<D, Start> {
    const forward = remoteAction(name, spec as never, DEFAULT_STEP_RETRY, false);
    const compensation = spec.compensate ? remoteAction(`${name} (compensation)`, spec.compensate as never, DEFAULT_COMPENSATION_RETRY, true) : undefined;
    this.#push({
      name,
      index: this.#steps.length,
      forward,
      compensation,
      keep: spec.keep as StepDef['keep'],
      update: spec.update as StepDef['update'],
      onFailure: spec.onFailure ?? 'compensate',
    });
    return this;
  }

  /** A step run by the worker itself, inside the saga's transaction. */
  localStep<K>(name: string, spec: LocalStepSpec<D, K>): SagaBuilder<D, Start> {
    const forward = localAction(spec.run as never, spec, DEFAULT_STEP_RETRY);
    const compensation = spec.compensate ? localAction(spec.compensate.run as never, spec.compensate, DEFAULT_COMPENSATION_RETRY) : undefined;
    this.#push({
      name,
      index: this.#steps.length,
      forward,
      compensation,
      keep: (result) => result,
      update: spec.update as StepDef['update'],
      onFailure: spec.onFailure ?? 'compensate',
    });
    return this;
  }

  #push(step: StepDef): void {
    if (!NAME.test(step.name)) throw new DefinitionError(`saga ${this.spec.name}: invalid step name ${JSON.stringify(step.name)}`);
    if (this.#steps.some((s) => s.name === step.name)) throw new DefinitionError(`saga ${this.spec.name}: step name ${step.name} is used twice`);
    this.#steps.push(Object.freeze(step));
  }

  /** Checks the whole definition and freezes it. Every error here is a programming error, reported at startup. */
  build(): SagaDefinition<D, Start> {
    const { name, version, start } = this.spec;
    if (!NAME.test(name)) throw new DefinitionError(`invalid saga name ${JSON.stringify(name)}`);
    if (!Number.isInteger(version) || version < 1) throw new DefinitionError(`saga ${name}: version must be an integer >= 1`);
    if (!start.topic) throw new DefinitionError(`saga ${name}: start message ${start.type} must name a topic (the orchestrator listens there)`);
    if (this.#steps.length === 0) throw new DefinitionError(`saga ${name}: a saga needs at least one step`);
    // Registering every message also checks that one type name never stands for two schemas.
    const registry = new MessageRegistry([start]);
    for (const s of this.#steps) for (const a of [s.forward, s.compensation]) for (const m of a?.messages ?? []) registry.add(m);
    const steps = Object.freeze([...this.#steps]);
    const byName = new Map(steps.map((s) => [s.name, s]));
    return Object.freeze({
      name,
      version,
      start,
      topic: start.topic,
      consumer: `orchestrator.${name}`,
      initialData: this.spec.data,
      steps,
      registry,
      step: (n: string) => byName.get(n),
      deadline: Object.freeze({ ...this.spec.deadline }),
    });
  }
}

function remoteAction(
  label: string,
  spec: {
    command: AnyMessage;
    payload: (data: unknown, kept: unknown) => unknown;
    success: readonly AnyMessage[];
    failure?: readonly AnyMessage[];
    retryFailures?: boolean | ((reply: unknown) => boolean);
    technicalFailures?: (reply: unknown) => boolean;
    timeoutMs?: number;
    retry?: Partial<StepRetry>;
    gate?: string;
  },
  retryBase: StepRetry,
  retryFailuresDefault: boolean,
): ActionDef {
  if (!spec.command?.topic) throw new DefinitionError(`${label}: command ${spec.command?.type} must name a topic`);
  if (!spec.success?.length) throw new DefinitionError(`${label}: at least one success reply is required`);
  const success = new Set(spec.success.map((m) => m.type));
  const failure = new Set((spec.failure ?? []).map((m) => m.type));
  for (const t of failure) if (success.has(t)) throw new DefinitionError(`${label}: reply ${t} cannot mean both success and failure`);
  if (success.has(spec.command.type) || failure.has(spec.command.type)) throw new DefinitionError(`${label}: a reply type cannot be the command type`);
  const rf = spec.retryFailures ?? retryFailuresDefault;
  return Object.freeze({
    kind: 'remote' as const,
    command: spec.command,
    messages: [spec.command, ...spec.success, ...(spec.failure ?? [])],
    payload: spec.payload,
    success,
    failure,
    retryFailures: typeof rf === 'function' ? rf : () => rf,
    technical: spec.technicalFailures ?? (() => false),
    gate: checkGate(label, spec.gate) ?? spec.command.topic,
    timeoutMs: checkTimeout(label, spec.timeoutMs),
    retry: normalizeRetry(spec.retry, retryBase),
  });
}

function localAction(run: ActionDef['run'], opts: StepOptions, retryBase: StepRetry): ActionDef {
  if (typeof run !== 'function') throw new DefinitionError('a local step needs a run function');
  return Object.freeze({
    kind: 'local' as const,
    messages: [],
    success: new Set<string>(),
    failure: new Set<string>(),
    retryFailures: () => true,
    technical: () => false,
    gate: undefined,
    run,
    timeoutMs: undefined,
    retry: normalizeRetry(opts.retry, retryBase),
  });
}

function checkGate(label: string, g: string | undefined): string | undefined {
  if (g === undefined) return undefined;
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(g)) throw new DefinitionError(`${label}: gate must be 1-128 letters, digits or _.:-, got ${JSON.stringify(g)}`);
  return g;
}

function checkTimeout(label: string, t: number | undefined): number | undefined {
  if (t === undefined) return undefined;
  if (!Number.isFinite(t) || t <= 0) throw new DefinitionError(`${label}: timeoutMs must be a positive number`);
  return t;
}

/**
 * Starts a saga definition. The type of the saga's data is inferred from `data`, and each step's
 * command payload, reply payloads and kept data are inferred from their zod schemas.
 */
export function defineSaga<Start extends AnyMessage, D>(spec: {
  name: string;
  version?: number;
  start: Start;
  data: (payload: PayloadOf<Start>) => D;
  /** Overall time limit of every saga of this type (a start may set its own), and what expiry does (default: compensate). */
  deadline?: { ms?: number; onExpiry?: DeadlinePolicy };
}): SagaBuilder<D, Start> {
  const ms = spec.deadline?.ms;
  if (ms !== undefined && !(Number.isFinite(ms) && ms > 0)) throw new DefinitionError(`saga ${spec.name}: deadline.ms must be a positive number`);
  const onExpiry = spec.deadline?.onExpiry ?? 'compensate';
  if (onExpiry !== 'compensate' && onExpiry !== 'fail') throw new DefinitionError(`saga ${spec.name}: deadline.onExpiry must be compensate or fail`);
  return new SagaBuilder<D, Start>({ name: spec.name, version: spec.version ?? 1, start: spec.start, data: spec.data, deadline: { ms, onExpiry } });
}
