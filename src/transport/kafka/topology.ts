import { DEAD_LETTER_CONSUMER, DEAD_LETTER_TOPIC, DEFAULT_REDELIVERY, type Topology } from '../contract.js';
import type { KafkaAdmin } from './admin.js';
import type { KafkaNames } from './names.js';

/**
 * What this transport knows of the broker's topology: which logical topics it declared, which of
 * them may go unread (`requireRoute: false`) and which a consumer reads. The publisher asks it
 * whether a topic is routable; declare() and subscribe() tell it.
 */
export class KafkaTopology {
  /** Logical topics declared here. */
  readonly #declared = new Set<string>([DEAD_LETTER_TOPIC]);
  /** Declared with requireRoute: false. */
  readonly #optional = new Set<string>();
  /** Read by a consumer declared or subscribed here. */
  readonly #routes = new Set<string>([DEAD_LETTER_TOPIC]);

  constructor(
    private readonly admin: KafkaAdmin,
    private readonly names: KafkaNames,
  ) {}

  /** A subscription reads these topics: publishes to them are routable. */
  reading(topics: readonly string[]): void {
    for (const t of topics) this.#routes.add(t);
  }

  /**
   * Whether a publish to a topic can reach a consumer. A topic declared here is routable when a
   * consumer declared or subscribed here reads it, or it was declared `requireRoute: false` (then it
   * only has to exist). A topic this transport did not declare (a publisher-only process, such as
   * `sagaflow publish`) is routable when it exists on the broker: some process declared it.
   */
  async route(logical: string): Promise<{ ok: true } | { ok: false; why: string }> {
    if (this.#routes.has(logical)) return { ok: true };
    if (this.#declared.has(logical) && !this.#optional.has(logical)) return { ok: false, why: `no consumer reads topic ${logical}` };
    if (await this.admin.exists(this.names.topic(logical))) return { ok: true };
    return { ok: false, why: `topic ${logical} does not exist (not declared)` };
  }

  /**
   * Creates the missing topics (declared topics, the dead-letter topic, and each consumer's retry
   * topics for the default retry policy; subscribe() adds those of its own policy) and initialises
   * the committed offsets of new consumer groups to the end of their topics (KafkaAdmin
   * .initGroupOffsets explains why). The dead-letter recorder's group is always part of it, so a
   * dead letter produced before the recorder first runs is kept for it.
   */
  async declare(topology: Topology): Promise<void> {
    const { names, admin } = this;
    const consumers = new Map<string, Set<string>>([[DEAD_LETTER_CONSUMER, new Set([DEAD_LETTER_TOPIC])]]);
    for (const c of topology.consumers) {
      let set = consumers.get(c.consumer);
      if (!set) consumers.set(c.consumer, (set = new Set()));
      for (const t of c.topics) set.add(t);
    }
    const tiers = [...new Set(DEFAULT_REDELIVERY.delaysMs)];
    const logicalTopics = new Set<string>([DEAD_LETTER_TOPIC, ...topology.topics.map((t) => t.name)]);
    for (const set of consumers.values()) for (const t of set) logicalTopics.add(t);
    const groupTopics = new Map<string, string[]>();
    for (const [consumer, set] of consumers) {
      groupTopics.set(names.group(consumer), [...[...set].map((t) => names.topic(t)), ...tiers.map((d) => names.retryTopic(consumer, d))]);
    }
    await admin.ensureTopics([...[...logicalTopics].map((t) => names.topic(t)), ...[...groupTopics.values()].flat()]);
    await Promise.all([...groupTopics].map(([group, topics]) => admin.initGroupOffsets(group, topics)));
    for (const t of topology.topics) {
      this.#declared.add(t.name);
      if (t.requireRoute === false) this.#optional.add(t.name);
    }
    for (const set of consumers.values()) {
      for (const t of set) {
        this.#declared.add(t);
        this.#routes.add(t);
      }
    }
  }
}
