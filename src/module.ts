import type { Db } from './db/db.js';
import type { MessageDefinition } from './messages/message.js';
import { MessageRegistry } from './messages/message.js';
import type { SagaDefinition } from './saga/definition.js';
import { checkMigration, type SagaMigration } from './saga/migration.js';
import { DefinitionSet } from './saga/versions.js';
import type { ParticipantDefinition } from './participant/definition.js';
import { DefinitionError } from './errors.js';
import { breakerPolicies, bulkheadPolicies, rateLimitPolicies, type ResilienceConfig } from './resilience/policy.js';

/**
 * What a user module exports for `sagaflow worker --module <file>`: its sagas and participants,
 * the messages it can publish, and optionally its own schema setup (the example's tables).
 */
export interface SagaflowModule {
  /** Several versions of one saga type may be listed: new sagas start on the newest. */
  readonly sagas?: readonly SagaDefinition<any, any>[];
  /** Mappings `sagaflow sagas migrate` uses to move in-flight sagas between versions. */
  readonly migrations?: readonly SagaMigration[];
  readonly participants?: readonly ParticipantDefinition[];
  /** Extra message types `sagaflow publish` may send (start messages and commands are included anyway). */
  readonly messages?: readonly MessageDefinition[];
  /** Circuit breakers (and, later, limits) per gate; see the README's resilience section. */
  readonly resilience?: ResilienceConfig;
  /** Creates the module's own tables; run by `sagaflow migrate` and the demo. Must be idempotent. */
  readonly migrate?: (db: Db) => Promise<void>;
}

/** Every message type a module knows (for `sagaflow publish` validation). */
export function moduleRegistry(mod: SagaflowModule): MessageRegistry {
  const reg = new MessageRegistry(mod.messages ?? []);
  for (const s of mod.sagas ?? []) for (const m of s.registry.all()) reg.add(m);
  for (const p of mod.participants ?? []) {
    for (const h of p.handlers.values()) reg.add(h.message);
    for (const r of p.replies) reg.add(r);
  }
  return reg;
}

/** Checks the module as a whole: names unique, topics not shared by two orchestrators. */
export function validateModule(mod: SagaflowModule): void {
  // Refuses two definitions with one name and version, and versions that disagree on the start message.
  const defs = new DefinitionSet(mod.sagas ?? []);
  const sagaTopics = new Map<string, string>();
  for (const s of defs.newestOfEach()) {
    const other = sagaTopics.get(s.topic);
    if (other) throw new DefinitionError(`sagas ${other} and ${s.name} both listen on topic ${s.topic}; give their start messages different topics`);
    sagaTopics.set(s.topic, s.name);
  }
  const participantNames = new Set<string>();
  for (const p of mod.participants ?? []) {
    if (participantNames.has(p.name)) throw new DefinitionError(`two participants are named ${p.name}`);
    participantNames.add(p.name);
    for (const t of p.topics) {
      if (sagaTopics.has(t)) throw new DefinitionError(`participant ${p.name} listens on ${t}, the topic of saga ${sagaTopics.get(t)}`);
    }
  }
  moduleRegistry(mod); // throws if one type name stands for two schemas
  breakerPolicies(mod.resilience); // throws on a bad breaker setting
  bulkheadPolicies(mod.resilience);
  rateLimitPolicies(mod.resilience);
  const migrations = new Set<string>();
  for (const m of mod.migrations ?? []) {
    const key = `${m.saga} v${m.from} -> v${m.to}`;
    if (migrations.has(key)) throw new DefinitionError(`two migrations of ${key}`);
    migrations.add(key);
    checkMigration(m, defs.get(m.saga, m.from), defs.get(m.saga, m.to));
  }
}
