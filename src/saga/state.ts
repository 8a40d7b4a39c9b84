/**
 * The persisted shape of a saga instance. `EngineState` is stored as jsonb in `sagas.state`;
 * its field names are persisted and therefore part of the schema (change them only with a migration).
 */
export type SagaStatus = 'running' | 'compensating' | 'completed' | 'compensated' | 'failed';
export const SAGA_STATUSES: readonly SagaStatus[] = ['running', 'compensating', 'completed', 'compensated', 'failed'];
export const TERMINAL_STATUSES: ReadonlySet<SagaStatus> = new Set(['completed', 'compensated', 'failed']);

export type Phase = 'forward' | 'compensation';

/** The attempt a saga is waiting on: a reply, a retry timer, or a local function run. */
export interface Cursor {
  readonly step: string;
  readonly phase: Phase;
  readonly attempt: number;
  /** Step-history row of this attempt. */
  readonly seq: number;
  /** held: the attempt has not started; its command waits at a closed gate (no row, no budget used). */
  readonly waiting: 'reply' | 'retry' | 'local' | 'held';
  /** The command in flight (null while waiting to retry, held, or for a local step). */
  readonly commandId: string | null;
  /** Why a held attempt waits and at which gate, e.g. `waiting: circuit payment open`. */
  readonly held?: { readonly gate: string; readonly reason: string };
  /** Command ids of earlier attempts of this step and phase: their late replies are stale. */
  readonly earlier: readonly string[];
}

export interface EngineState {
  /** Forward steps that succeeded, in the order they did (compensation walks it backwards). */
  readonly done: readonly string[];
  /** Steps whose compensation succeeded. */
  readonly undone: readonly string[];
  /** Data kept from each step's success, for its compensation. */
  readonly kept: Readonly<Record<string, unknown>>;
  readonly cursor: Cursor | null;
  /** Last step-history sequence number used. */
  readonly seq: number;
  readonly correlationId: string;
  /** Times an attempt was held at a closed gate (each is a transition without a step row); absent = 0. */
  readonly holds?: number;
  /** Where a failed saga stopped, so that replay knows where to resume. */
  readonly failedAt: { readonly step: string; readonly phase: Phase } | null;
}

export interface SagaInstance {
  readonly id: string;
  readonly tenantId: string;
  readonly type: string;
  readonly definitionVersion: number;
  readonly status: SagaStatus;
  readonly data: unknown;
  readonly state: EngineState;
  readonly reason: string | null;
  /** Row version; +1 per applied input, so a saga's versions are contiguous. */
  readonly version: number;
}

/** Headers a start message may carry. */
export const START_HEADERS = Object.freeze({
  /** This saga's own deadline, in milliseconds from its start (overrides the definition's). */
  deadlineMs: 'sagaflow-deadline-ms',
});

/** Headers a command carries and a participant echoes on its reply, so a late reply can be placed. */
export const STEP_HEADERS = Object.freeze({
  step: 'sagaflow-step',
  phase: 'sagaflow-phase',
  attempt: 'sagaflow-attempt',
  seq: 'sagaflow-seq',
  sagaType: 'sagaflow-saga-type',
});
