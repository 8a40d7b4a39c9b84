import { DefinitionError } from '../errors.js';
import type { ParticipantDefinition } from './definition.js';

/**
 * Which of a module's participants one worker process runs: all of them (no selection), only the
 * named ones, or all but the named ones. Running all but one is how a participant gets replaced by
 * a service written in another language: the worker still declares the whole module's topology
 * (so the replaced participant's queue exists), it just does not consume it.
 */
export interface ParticipantSelection {
  readonly only?: readonly string[];
  readonly exclude?: readonly string[];
}

export function selectParticipants<P extends Pick<ParticipantDefinition, 'name'>>(all: readonly P[], selection: ParticipantSelection = {}): P[] {
  const { only, exclude } = selection;
  if (only && exclude) throw new DefinitionError('name the participants to run or the ones to leave out, not both');
  const names = only ?? exclude;
  if (!names) return [...all];
  if (names.length === 0) throw new DefinitionError('the participant list is empty');
  const known = all.map((p) => p.name);
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    const list = known.length > 0 ? known.join(', ') : 'none';
    throw new DefinitionError(`unknown participant${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; the module's participants are: ${list}`);
  }
  return only ? all.filter((p) => only.includes(p.name)) : all.filter((p) => !names.includes(p.name));
}

/** `"payment, stock"` -> `['payment', 'stock']` (a CLI list; empty items are dropped). */
export function parseNameList(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
