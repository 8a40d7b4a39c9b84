import type { PathSummary } from './path.js';

/** What `sagaflow history export` writes: a saga's applied inputs in order, each with the path it took. */
export interface SagaHistory {
  readonly format: typeof HISTORY_FORMAT;
  readonly sagaId: string;
  readonly sagaType: string;
  /** The definition version the saga started on. */
  readonly definitionVersion: number;
  readonly inputs: readonly HistoryEntry[];
}

export interface HistoryEntry {
  /** The saga version the input produced. */
  readonly version: number;
  readonly definitionVersion: number;
  readonly input: { readonly kind: string } & Record<string, unknown>;
  readonly path: PathSummary;
}

export const HISTORY_FORMAT = 'sagaflow.history/1';
