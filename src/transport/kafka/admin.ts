import type { Admin, Kafka } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';

/** Kafka error types an offset commit outside the group gets once the group has live members. */
const GROUP_TURNED_LIVE = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS']);

export interface KafkaAdminOptions {
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly logger: Logger;
  /** Deadline for topic creation and for partition leaders to appear. */
  readonly timeoutMs: number;
}

interface TopicOffsetsCommit {
  topic: string;
  partitions: { partition: number; offset: string }[];
}

/** The part of kafkajs' internal broker object used for a group-less offset commit. */
interface RawBroker {
  offsetCommit(request: { groupId: string; groupGenerationId: number; memberId: string; topics: TopicOffsetsCommit[] }): Promise<unknown>;
}
interface RawCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  findGroupCoordinator(request: { groupId: string }): Promise<RawBroker>;
}

/**
 * Topic creation and consumer-group offset initialisation, with a cache of the topics known to
 * exist (a publish checks routes against it without a round trip).
 *
 * Existence is checked with ListTopics (a metadata request for ALL topics), never with a metadata
 * request naming the topic: a broker with `auto.create.topics.enable=true` (Kafka's default) would
 * create a mistyped topic on the spot.
 */
export class KafkaAdmin {
  readonly #kafka: Kafka;
  readonly #admin: Admin;
  readonly #o: KafkaAdminOptions;
  readonly #known = new Set<string>();
  /** topic -> time until which "does not exist" is believed without asking again. */
  readonly #absent = new Map<string, number>();
  #connected: Promise<void> | undefined;
  /** Topic creation is serialised: declare() and subscribe() may ask for the same topics at once. */
  #creating: Promise<unknown> = Promise.resolve();
  #raw: Promise<RawCluster | undefined> | undefined;

  constructor(kafka: Kafka, opts: KafkaAdminOptions) {
    this.#kafka = kafka;
    this.#admin = kafka.admin();
    this.#o = opts;
  }

  get admin(): Admin {
    return this.#admin;
  }

  async connect(): Promise<void> {
    this.#connected ??= this.#admin.connect().catch((err: unknown) => {
      this.#connected = undefined;
      throw err;
    });
    await this.#connected;
  }

  isKnown(topic: string): boolean {
    return this.#known.has(topic);
  }

  /** Whether the topic exists on the broker; positive answers are cached for good, negative ones for 2 s. */
  async exists(topic: string): Promise<boolean> {
    if (this.#known.has(topic)) return true;
    const until = this.#absent.get(topic);
    if (until !== undefined && until > Date.now()) return false;
    await this.connect();
    for (const t of await this.#admin.listTopics()) this.#known.add(t);
    if (this.#known.has(topic)) {
      this.#absent.delete(topic);
      return true;
    }
    this.#absent.set(topic, Date.now() + 2_000);
    return false;
  }

  /**
   * Creates the topics that do not exist yet (idempotent) and waits until every partition of every
   * named topic has a leader. Existing topics are left as they are, whatever their partition count.
   */
  async ensureTopics(topics: readonly string[]): Promise<void> {
    const wanted = [...new Set(topics)].filter((t) => !this.#known.has(t));
    if (wanted.length === 0) return;
    const run = this.#creating.then(() => this.#ensure(wanted));
    this.#creating = run.catch(() => {});
    await run;
  }

  async #ensure(wanted: string[]): Promise<void> {
    await this.connect();
    const existing = new Set(await this.#admin.listTopics());
    for (const t of existing) this.#known.add(t);
    const missing = wanted.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      // Leaders are awaited below, not by kafkajs: its wait gives up on the UNKNOWN_TOPIC_OR_PARTITION
      // a KRaft broker answers until the new topic reaches its metadata cache, and it is skipped
      // when another process created the topics first (createTopics then answers false).
      await this.#admin.createTopics({
        topics: missing.map((topic) => ({
          topic,
          numPartitions: this.#o.partitions,
          replicationFactor: this.#o.replicationFactor,
        })),
        waitForLeaders: false,
        timeout: this.#o.timeoutMs,
      });
      this.#o.logger.info({ topics: missing, partitions: this.#o.partitions }, 'kafka topics created');
    }
    await this.#waitForLeaders(wanted);
    for (const t of wanted) {
      this.#known.add(t);
      this.#absent.delete(t);
    }
  }

  async #waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + this.#o.timeoutMs;
    let lastError = '';
    for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
      try {
        const { topics: meta } = await this.#admin.fetchTopicMetadata({ topics });
        const led = meta.length === topics.length && meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
        // A leader in the metadata may still answer NOT_LEADER for a moment; a consumer's first
        // fetch would fail on it. ListOffsets succeeding on every partition means they serve.
        if (led) {
          await Promise.all(topics.map((t) => this.#admin.fetchTopicOffsets(t)));
          return;
        }
        lastError = 'some partitions have no leader yet';
      } catch (err) {
        lastError = errorMessage(err);
      }
      if (Date.now() > deadline) {
        throw new Error(`kafka topics ${topics.join(', ')} have no partition leaders after ${this.#o.timeoutMs} ms: ${lastError}`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /**
   * Gives a consumer group that has no committed offset for some partitions of `topics` one: the
   * partition's current END (high watermark). Partitions that have an offset are never touched.
   *
   * Why: a group without a committed offset starts wherever its `fromBeginning` setting says when it
   * first runs. "Latest" would skip every message published between declare() and the consumer's
   * first start (the contract: a message published after declare is kept for a consumer that starts
   * later); "earliest" would replay an existing topic's whole retained history into a new consumer.
   * Committing END at declare time is exactly "the queue exists from now on", like a RabbitMQ queue
   * bound at declare. The consumers themselves run with `fromBeginning: true`, which then only
   * applies to partitions that got no offset here (a partition added later, a group that was active
   * while it was declared): for those, a duplicate is preferred to a loss.
   *
   * Only a group with no live member (state Empty, or Dead = unknown) is initialised; a live group's
   * positions belong to its members. Two processes declaring the same new group at the same moment
   * could both see "no offset" and the later one would commit a later END: a narrow race at first
   * deployment only, and only for messages published within it.
   */
  async initGroupOffsets(groupId: string, topics: readonly string[]): Promise<number> {
    if (topics.length === 0) return 0;
    await this.connect();
    // Right after a topic is created, its partitions may answer NOT_LEADER / UNKNOWN_TOPIC for a
    // moment (the leader is elected but not serving yet): retry retriable errors up to the deadline.
    const deadline = Date.now() + this.#o.timeoutMs;
    for (let wait = 50; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await this.#initGroupOffsets(groupId, topics);
      } catch (err) {
        const retriable = (err as { retriable?: unknown }).retriable === true;
        if (!retriable || Date.now() + wait > deadline) throw err;
        this.#o.logger.debug({ groupId, err: errorMessage(err) }, 'kafka group offset initialisation: retrying');
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async #initGroupOffsets(groupId: string, topics: readonly string[]): Promise<number> {
    const { groups } = await this.#admin.describeGroups([groupId]);
    const state = groups[0]?.state ?? 'Dead';
    if (state !== 'Empty' && state !== 'Dead') {
      this.#o.logger.debug({ groupId, state }, 'kafka group is live: its committed offsets are left to its members');
      return 0;
    }
    const committed = await this.#admin.fetchOffsets({ groupId, topics: [...topics] });
    const commits: TopicOffsetsCommit[] = [];
    for (const { topic, partitions } of committed) {
      const missing = partitions.filter((p) => Number(p.offset) < 0);
      if (missing.length === 0) continue;
      const ends = new Map((await this.#admin.fetchTopicOffsets(topic)).map((o) => [o.partition, o.high]));
      commits.push({ topic, partitions: missing.map((p) => ({ partition: p.partition, offset: ends.get(p.partition) ?? '0' })) });
    }
    if (commits.length === 0) return 0;
    try {
      await this.#commitAsNonMember(groupId, commits);
    } catch (err) {
      // Another process's consumer joined the group between describeGroups and this commit (workers
      // of one deployment start together and each declares the whole topology): the group is live
      // now, so its positions belong to its members. Not an error.
      if (GROUP_TURNED_LIVE.has((err as { type?: string }).type ?? '')) {
        this.#o.logger.debug({ groupId, err: errorMessage(err) }, 'kafka group became live while declaring; its members own its offsets');
        return 0;
      }
      throw err;
    }
    const n = commits.reduce((sum, c) => sum + c.partitions.length, 0);
    this.#o.logger.debug({ groupId, partitions: n }, 'kafka group offsets initialised to the end of its topics');
    return n;
  }

  /**
   * An OffsetCommit outside any group generation (generation -1, no member id), which the broker
   * accepts for a group without members. kafkajs' public `admin.setOffsets` does the same by joining
   * the group with a throw-away consumer and waiting for a fetch, which costs one `maxWaitTime` (5 s)
   * per topic; the direct request costs one round trip. It uses kafkajs' internal cluster factory
   * (kafkajs is pinned at 2.2.4); if that is ever missing, the public API is used instead.
   */
  async #commitAsNonMember(groupId: string, topics: TopicOffsetsCommit[]): Promise<void> {
    const raw = await this.#rawCluster();
    if (!raw) {
      for (const t of topics) await this.#admin.setOffsets({ groupId, topic: t.topic, partitions: t.partitions });
      return;
    }
    const coordinator = await raw.findGroupCoordinator({ groupId });
    await coordinator.offsetCommit({ groupId, groupGenerationId: -1, memberId: '', topics });
  }

  #rawCluster(): Promise<RawCluster | undefined> {
    this.#raw ??= (async () => {
      const kafka = this.#kafka as unknown as Record<symbol, unknown>;
      const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
      const create = sym === undefined ? undefined : kafka[sym];
      if (typeof create !== 'function') {
        this.#o.logger.warn('kafkajs internals changed: initialising group offsets through admin.setOffsets (slow)');
        return undefined;
      }
      const cluster = (create as (o: object) => RawCluster)({ allowAutoTopicCreation: false });
      await cluster.connect();
      return cluster;
    })().catch((err: unknown) => {
      this.#raw = undefined;
      throw err;
    });
    return this.#raw;
  }

  async disconnect(): Promise<void> {
    const raw = this.#raw;
    this.#raw = undefined;
    await Promise.allSettled([
      raw?.then((c) => c?.disconnect()),
      this.#connected ? this.#admin.disconnect() : Promise.resolve(),
    ]);
    this.#connected = undefined;
  }
}
