import { DefinitionError } from '../errors.js';
import type { SagaDefinition } from './definition.js';

/** A saga type and definition version, as a saga row records them (`saga_type`, `definition_version`). */
export interface DefinitionKey {
  readonly type: string;
  readonly version: number;
}

/** How the marker reads that a worker sets on a saga whose definition version it does not have. */
export function waitingReason(key: DefinitionKey): string {
  return `${WAITING_PREFIX}${key.type} v${key.version}`;
}
export const WAITING_PREFIX = 'waiting for definition ';

/**
 * The saga definitions a process has, by type and version. A module may export several versions of
 * one saga type: new sagas start on the newest, and each saga is driven by the version it started
 * on (its row's `definition_version`) until it ends or an operator migrates it. All versions of a
 * type share one orchestrator (consumer, start message and topic), so they are one subscription.
 */
export class DefinitionSet {
  readonly #byType = new Map<string, Map<number, SagaDefinition>>();

  constructor(defs: readonly SagaDefinition<any, any>[]) {
    for (const d of defs as readonly SagaDefinition[]) {
      const versions = this.#byType.get(d.name) ?? new Map<number, SagaDefinition>();
      if (versions.has(d.version)) throw new DefinitionError(`saga ${d.name} v${d.version} is defined twice; give the changed copy a new version`);
      const other = versions.values().next().value;
      if (other && (other.start.type !== d.start.type || other.topic !== d.topic)) {
        // One orchestrator per type: a start message must not depend on which version is newest.
        throw new DefinitionError(`saga ${d.name} v${d.version} starts with ${d.start.type} on ${d.topic}, v${other.version} with ${other.start.type} on ${other.topic}; all versions of a saga share the start message`);
      }
      versions.set(d.version, d);
      this.#byType.set(d.name, versions);
    }
  }

  get size(): number {
    return this.#byType.size;
  }

  types(): string[] {
    return [...this.#byType.keys()];
  }

  get(type: string, version: number): SagaDefinition | undefined {
    return this.#byType.get(type)?.get(version);
  }

  /** The version new sagas of this type start on. */
  newest(type: string): SagaDefinition | undefined {
    const versions = this.#byType.get(type);
    if (!versions) return undefined;
    return versions.get(Math.max(...versions.keys()));
  }

  /** The newest version of every type: one per orchestrator. */
  newestOfEach(): SagaDefinition[] {
    return this.types().map((t) => this.newest(t)!);
  }

  /** Every definition, each type's versions in ascending order. */
  all(): SagaDefinition[] {
    return [...this.#byType.values()].flatMap((m) => [...m.values()].sort((a, b) => a.version - b.version));
  }

  versions(type: string): number[] {
    return [...(this.#byType.get(type)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** Every (type, version) this set can drive, for the queries that must skip the others. */
  keys(): DefinitionKey[] {
    return this.all().map((d) => ({ type: d.name, version: d.version }));
  }

  /** Only the given types (a worker whose role runs some orchestrators only). */
  only(types: readonly string[]): DefinitionSet {
    return new DefinitionSet(this.all().filter((d) => types.includes(d.name)));
  }
}
