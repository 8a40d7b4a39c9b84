import { EventEmitter } from 'node:events';
import type { Config } from '../config.js';
import type { Db } from '../db/db.js';
import { assertSchemaCurrent } from '../db/migrate.js';
import { serverWarnings } from '../db/server-checks.js';
import { SagaflowError, errorMessage } from '../errors.js';
import { InboxStore } from '../inbox/store.js';
import { MessageRegistry } from '../messages/message.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../messages/envelope.js';
import { silentLogger, type Logger } from '../log.js';
import { OutboxDispatcher } from '../outbox/dispatcher.js';
import { OutboxRelay, type RelayOptions } from '../outbox/relay.js';
import { OutboxStore } from '../outbox/store.js';
import { PENDING_NOTIFICATION, PendingInputStore } from '../saga/pending-store.js';
import { DefinitionSet } from '../saga/versions.js';
import { warnOnce, type VersionDeps } from '../transaction/waiting.js';
import type { SagaStatus } from '../saga/state.js';
import { SagaStore } from '../saga/store.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  DEFAULT_REDELIVERY,
  type Delivery,
  type Handler,
  type RedeliveryPolicy,
  type Subscription,
  type Topology,
  type Transport,
} from '../transport/contract.js';
import { Batcher, type Outcome } from '../scheduling/batcher.js';
import { PROBE_SENT_HEADER, probedDb, wallMs, type LatencyProbe, type ProbeSnapshot } from '../observability/latency-probe.js';
import { DeadLetterRecorder, type DeadLetterRecord } from '../dead-letters/recorder.js';
import { decodeDelivery, type Inbound } from '../transaction/decode.js';
import { validateModule, type SagaflowModule } from '../module.js';
import { selectParticipants, type ParticipantSelection } from '../participant/select.js';
import { participantWork } from '../transaction/participant-work.js';
import { parkSaga } from '../transaction/park.js';
import { sagaWork } from '../transaction/saga-work.js';
import { transitionSettings, type AppliedDecision, type EventsMode } from '../transaction/transitions.js';
import { TimerService, type TimerOptions } from './timers.js';
import { resilienceRuntime } from '../resilience/runtime.js';
import { runTransactional, type Work } from '../transaction/run.js';
import type { MessageOutcome } from '../transaction/outcome.js';
import { DEFAULT_WIRE_FORMAT, type WireFormat } from '../messages/wire.js';
import type { Metrics } from '../observability/metrics.js';
import type { SagaTracing } from '../observability/tracing.js';
import { observeApplied, observeBatch, reasonLabel, watchConsumerLag } from '../observability/worker-hooks.js';

export type Role = 'all' | 'orchestrator' | 'participants';

export interface WorkerOptions {
  readonly schema?: string;
  readonly role?: Role;
  /** Which of the module's participants to run (default all; `role` 'orchestrator' runs none anyway). */
  readonly participants?: ParticipantSelection;
  /** Messages per transaction at most. */
  readonly maxBatch?: number;
  /** Transactions in flight per consumer. */
  readonly maxConcurrentBatches?: number;
  /**
   * Extra transactions in flight per consumer for a short queue only (scheduling/batcher.ts).
   * Default 0: measured on two cores, the small extra transactions cost more CPU than the wait they
   * save (docs/performance.md, "Spare batch slots"); a machine with idle cores may gain from 1-2.
   */
  readonly spareBatches?: number;
  readonly prefetch?: number;
  readonly retry?: RedeliveryPolicy;
  readonly maxMessageBytes?: number;
  readonly eventsTopic?: string;
  readonly events?: EventsMode;
  /** Keep every applied input for history export (default true). */
  readonly recordInputs?: boolean;
  /** How long the relay leaves rows alone that this process publishes itself right after COMMIT. */
  readonly outboxGraceMs?: number;
  readonly relay?: RelayOptions;
  readonly timers?: TimerOptions;
  /** Inbox rows older than this are deleted (default 7 days): longer than any redelivery. */
  readonly inboxRetentionMs?: number;
  /** Move broker dead letters into Postgres (default true). */
  readonly recordDeadLetters?: boolean;
  /** Random source for back-off jitter. */
  readonly random?: () => number;
  /** How commands, replies and events are written (both formats are always read). Default cloudevents. */
  readonly wireFormat?: WireFormat;
  /** Use the module's circuit breakers (default true). */
  readonly circuits?: boolean;
  /**
   * shared (default): replies arrive on the saga's own topic, behind its start messages. separate:
   * on `<topic>.replies`, a queue of their own, so a backlog of starts cannot delay replies past
   * their steps' timeouts (with a bulkhead, a burst then fires no timeout by queueing).
   */
  readonly replyQueue?: 'shared' | 'separate';
  /** Use the module's bulkheads and rate limits (default true). */
  readonly limits?: boolean;
  /** How long a process trusts its cached view of a closed breaker (default 500 ms). */
  readonly circuitRefreshMs?: number;
  /** Prometheus metrics to update (none when absent). */
  readonly metrics?: Metrics;
  /** OpenTelemetry spans of the message path (no tracing work at all when absent). */
  readonly tracing?: SagaTracing;
  /** Per-hop latency histograms for the bench's --breakdown (no timing work at all when absent). */
  readonly latencyProbe?: LatencyProbe;
}

export interface SagaChange {
  readonly sagaId: string;
  readonly sagaType: string;
  readonly status: SagaStatus;
  readonly version: number;
  readonly code: string | undefined;
}

export interface WorkerEvents {
  /** A saga transition committed. */
  transition: [SagaChange];
  /** A dead letter was stored in Postgres. */
  deadLetter: [DeadLetterRecord];
  /** Participant commands handled (committed). */
  handled: [{ participant: string; count: number }];
}

export interface Worker {
  start(): Promise<void>;
  /** Graceful: stop consuming, let in-flight transactions finish and ack, publish what is pending. */
  stop(): Promise<void>;
  readonly events: EventEmitter<WorkerEvents>;
  readonly relay: OutboxRelay;
  stats(): WorkerStats;
}

export interface WorkerStats {
  readonly batches: number;
  readonly messages: number;
  readonly timersFired: number;
  /** Sagas parked because a transition threw: their timer (retried later) or a reply (dead-lettered). */
  readonly sagasParked: number;
  /** Messages published right after COMMIT (the fast path). */
  readonly published: number;
  /** Messages published by the relay (recovery, client API, operator actions). */
  readonly relayed: number;
  readonly deadLettersRecorded: number;
  /** Deliveries acknowledged as duplicates (same id and meaning already applied); logged at debug only. */
  readonly duplicates: number;
  /** Per-hop latency histograms, only when the worker has a latency probe. */
  readonly latency?: ProbeSnapshot;
}

/** The worker options a configuration implies (the CLI, the demo and the bench all start from it). */
export function workerOptionsFrom(config: Config, extra: Partial<WorkerOptions> = {}): WorkerOptions {
  const polls = { fallbackPollMs: config.fallbackPollMs, idlePollMs: config.idlePollMs };
  return {
    schema: config.schema,
    prefetch: config.prefetch,
    maxBatch: config.maxBatch,
    maxConcurrentBatches: config.concurrentBatches,
    spareBatches: config.spareBatches,
    retry: config.retry,
    maxMessageBytes: config.maxMessageBytes,
    events: config.events,
    eventsTopic: config.eventsTopic,
    wireFormat: config.wireFormat,
    recordInputs: config.recordInputs,
    outboxGraceMs: config.outboxGraceMs,
    circuits: config.circuits,
    limits: config.limits,
    replyQueue: config.replyQueue,
    relay: polls,
    timers: polls,
    inboxRetentionMs: config.retention.inboxMs,
    ...extra,
  };
}

export function createWorker(deps: {
  db: Db;
  transport: Transport;
  module: SagaflowModule;
  logger?: Logger;
  options?: WorkerOptions;
}): Worker {
  const { db, transport, module: mod } = deps;
  const o = deps.options ?? {};
  const logger = deps.logger ?? silentLogger();
  const schema = o.schema ?? 'sagaflow';
  const role = o.role ?? 'all';
  validateModule(mod);
  const sagas = role === 'participants' ? [] : (mod.sagas ?? []);
  const participants = role === 'orchestrator' ? [] : selectParticipants(mod.participants ?? [], o.participants);
  const sagaStore = new SagaStore(schema);
  const inbox = new InboxStore(schema);
  const outbox = new OutboxStore(schema);
  const recorder = new DeadLetterRecorder(schema);
  const events = new EventEmitter<WorkerEvents>();
  const graceMs = o.outboxGraceMs ?? 10_000;
  const maxBytes = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  let timers: TimerService | undefined;
  const relay = new OutboxRelay(
    {
      db,
      store: outbox,
      publisher: transport.publisher,
      logger,
      onNotification: (p) => (p === PENDING_NOTIFICATION ? timers?.checkVersions() : p === 'operator' && timers?.wakeIn(0)),
    },
    o.relay,
  );
  const probe = o.latencyProbe;
  const dispatcher = new OutboxDispatcher({
    probe,
    publisher: transport.publisher,
    store: outbox,
    db,
    logger,
    onLeftBehind: () => relay.wake(graceMs + 50),
  });
  const resilience = resilienceRuntime({
    db,
    schema,
    config: sagas.length === 0 ? undefined : mod.resilience,
    circuits: o.circuits !== false,
    limits: o.limits !== false,
    logger,
    random: o.random ?? Math.random,
    onRelease: () => timers?.wakeIn(0),
    circuitRefreshMs: o.circuitRefreshMs,
  });
  const gates = resilience.gates;
  const replyQueue = o.replyQueue === 'separate' ? (def: { topic: string; consumer: string }) => ({ topic: `${def.topic}.replies`, consumer: `${def.consumer}.replies` }) : undefined;
  const transitions = transitionSettings({ eventsTopic: o.eventsTopic, events: o.events, random: o.random, wireFormat: o.wireFormat, gates, recordInputs: o.recordInputs, replyTopic: replyQueue && ((def) => replyQueue(def).topic) });
  const defs = new DefinitionSet(sagas);
  const versions: VersionDeps = { defs, pending: new PendingInputStore(schema), recorder, logger, warnMissing: warnOnce(logger, defs) };
  const { metrics, tracing } = o;
  const onApplied = (applied: readonly AppliedDecision[]) => {
    if (metrics) observeApplied(metrics, applied);
    let minWake = Infinity;
    for (const a of applied) {
      const inst = a.decision.instance!;
      if (a.decision.wake) minWake = Math.min(minWake, a.decision.wake.delayMs);
      events.emit('transition', { sagaId: inst.id, sagaType: inst.type, status: inst.status, version: inst.version, code: a.decision.code });
      // A saga that stops as failed needs a human: say so at warn, with the reason and the step.
      if (inst.status === 'failed' && a.decision.events.some((e) => e.type === 'SagaFailed')) {
        logger.warn({ sagaId: inst.id, sagaType: inst.type, reason: inst.reason, step: inst.state.failedAt?.step, phase: inst.state.failedAt?.phase }, 'saga failed; replay it once the cause is fixed');
      } else if (a.decision.events.some((e) => e.type === 'SagaCompleted' || e.type === 'SagaCompensated')) {
        logger.debug({ sagaId: inst.id, sagaType: inst.type, status: inst.status, reason: inst.reason }, 'saga ended');
      }
    }
    if (minWake !== Infinity) timers?.wakeIn(minWake);
  };
  if (defs.size > 0) {
    timers = new TimerService({ db, sagas: sagaStore, outbox, versions, transitions, dispatcher, graceMs, logger, onApplied, tracing }, o.timers);
  }

  const subscriptions: Subscription[] = [];
  const batchers: Batcher<Inbound, void>[] = [];
  let deadLettersRecorded = 0;
  let duplicates = 0;
  let repliesParked = 0;
  let pruneTimer: NodeJS.Timeout | undefined;
  let stopLagWatch: (() => void) | undefined;
  // Deliveries since the last inbox pruning: an idle worker does not prune (nothing new to age out
  // that cannot wait), so it sends no query at all.
  let deliveriesSincePrune = 0;

  /**
   * A message the saga's transition threw on for DEFINITION_MISMATCH (its stored step is gone from
   * the definition) is dead-lettered at once; the saga cannot move for any input either, so it is
   * parked too, to say so where operators look (its reason) rather than only in the dead letter.
   */
  async function parkMismatched(items: readonly Inbound[], outcomes: readonly MessageOutcome[]): Promise<void> {
    for (const [i, out] of outcomes.entries()) {
      const sagaId = items[i]!.envelope.sagaId;
      if (out.kind !== 'failed' || !sagaId || !(out.error instanceof SagaflowError) || out.error.code !== 'DEFINITION_MISMATCH') continue;
      try {
        if (await parkSaga({ db, sagas: sagaStore, logger }, sagaId, `${items[i]!.envelope.type} ${items[i]!.envelope.id}`, out.error, null)) repliesParked++;
      } catch (err) {
        logger.warn({ sagaId, err: errorMessage(err) }, 'could not park the saga (its message is dead-lettered anyway)');
      }
    }
  }

  function consumerHandler(registry: MessageRegistry, work: Work<Inbound>, kind: 'saga' | 'participant', consumer: string): Handler {
    const deliveredAt = new WeakMap<Inbound, number>();
    const batcher = new Batcher<Inbound, void>({
      maxBatch: o.maxBatch ?? 64,
      maxConcurrent: o.maxConcurrentBatches ?? 2,
      spare: o.spareBatches ?? 0,
      run: async (items) => {
        const started = metrics || tracing || probe ? performance.now() : 0;
        const span = tracing?.transaction(consumer, items.map((i) => i.envelope));
        const marks = { committedAt: 0 };
        if (probe) {
          for (const i of items) probe.record(`${kind} wait for a batch slot`, started - (deliveredAt.get(i) ?? started));
          probe.record(`${kind} batch size (messages, not ms)`, items.length);
        }
        const outcomes = await runTransactional({ db: probe ? probedDb(db, probe, marks, kind) : db, dispatcher, logger }, items, work);
        if (probe && marks.committedAt) probe.record(`${kind} after COMMIT: dispatch + capacity wait`, performance.now() - marks.committedAt);
        if (kind === 'saga') await parkMismatched(items, outcomes);
        let batchDuplicates = 0;
        const results = outcomes.map((out): Outcome<void> => {
          if (out.kind === 'failed') return { ok: false, error: out.error };
          if (out.kind === 'duplicate') batchDuplicates++;
          return { ok: true, value: undefined };
        });
        duplicates += batchDuplicates;
        if (metrics) {
          observeBatch(metrics, consumer, results, (performance.now() - started) / 1000);
          if (batchDuplicates) metrics.inboxDuplicates.inc({ consumer }, batchDuplicates);
        }
        span?.end(results.find((out) => !out.ok && !(out.error instanceof SagaflowError && !out.error.retryable)) ? 'batch failed' : undefined);
        return results;
      },
    });
    batchers.push(batcher);
    return async (delivery) => {
      relay.touch();
      timers?.touch();
      deliveriesSincePrune++;
      // Decoding and validation happen once, here, before any database work.
      let item: Inbound;
      try {
        item = decodeDelivery(delivery, registry, maxBytes);
      } catch (err) {
        metrics?.handled(consumer, 'dead_letter');
        throw err;
      }
      if (!probe) return batcher.submit(item);
      const t0 = performance.now();
      const sent = Number(delivery.headers[PROBE_SENT_HEADER]);
      if (sent > 0) probe.record(`${kind} broker publish -> delivered`, wallMs() - sent);
      deliveredAt.set(item, t0);
      await batcher.submit(item);
      const t1 = performance.now();
      probe.record(`${kind} delivered -> handler resolved`, t1 - t0);
      // The transports ack on the next turn of the event loop after the handler resolved.
      setImmediate(() => probe.record(`${kind} handler resolved -> next turn (ack)`, performance.now() - t1));
    };
  }

  /** Files a dead letter in `dead_letters`: the recorder's handler, and the transports' DeadLetterSink. */
  async function recordDeadLetter(d: Delivery): Promise<void> {
    const rec = await recorder.record(db, d);
    deadLettersRecorded++;
    metrics?.deadLetters.inc({ reason: reasonLabel(rec.reasonCode) });
    logger.warn({ messageId: rec.messageId, consumer: rec.consumer, reason: rec.reasonCode, error: rec.error }, 'dead letter recorded');
    events.emit('deadLetter', rec);
  }

  function topology(): Topology {
    // One orchestrator per saga type, whatever versions of it the module has.
    const all = new DefinitionSet(mod.sagas ?? []).newestOfEach();
    const parts = mod.participants ?? [];
    // The full module's topology, whatever this process's role: a queue must exist before its
    // first message is published, even if its consumer starts later.
    return {
      topics: [
        ...all.map((s) => ({ name: s.topic })),
        ...(replyQueue ? all.map((s) => ({ name: replyQueue(s).topic })) : []),
        ...parts.flatMap((p) => p.topics.map((t) => ({ name: t }))),
        { name: transitions.eventsTopic, requireRoute: false },
        { name: DEAD_LETTER_TOPIC },
      ],
      consumers: [
        ...all.map((s) => ({ consumer: s.consumer, topics: [s.topic] })),
        ...(replyQueue ? all.map((s) => ({ consumer: replyQueue(s).consumer, topics: [replyQueue(s).topic] })) : []),
        ...parts.map((p) => ({ consumer: p.consumer, topics: p.topics })),
        { consumer: DEAD_LETTER_CONSUMER, topics: [DEAD_LETTER_TOPIC] },
      ],
    };
  }

  return {
    events,
    relay,
    stats: () => ({
      batches: batchers.reduce((n, b) => n + b.batches, 0),
      messages: batchers.reduce((n, b) => n + b.items, 0),
      timersFired: timers?.fired ?? 0,
      sagasParked: (timers?.parked ?? 0) + repliesParked,
      published: dispatcher.published,
      relayed: relay.published,
      deadLettersRecorded,
      duplicates,
      ...(probe ? { latency: probe.snapshot() } : {}),
    }),

    async start() {
      if (metrics) stopLagWatch = watchConsumerLag(transport, metrics);
      await assertSchemaCurrent(db, schema);
      await transport.declare(topology());
      // The sink takes a failed message whose retry or dead-letter copy the broker refuses for good.
      const subOpts = { prefetch: o.prefetch ?? 512, retry: o.retry ?? DEFAULT_REDELIVERY, deadLetterSink: { record: recordDeadLetter } };
      for (const def of defs.newestOfEach()) {
        const work = sagaWork({ type: def.name, versions, sagas: sagaStore, inbox, outbox, graceMs, transitions, logger, onApplied, tracing });
        // Replies of every version this worker has are understood (older ones may expect other types).
        const registry = new MessageRegistry(defs.all().filter((d) => d.name === def.name).flatMap((d) => d.registry.all()));
        subscriptions.push(await transport.subscriber.subscribe([def.topic], def.consumer, consumerHandler(registry, work, 'saga', def.consumer), subOpts));
        if (replyQueue) {
          // The same work; the saga topic keeps serving replies to commands sent before the switch.
          const r = replyQueue(def);
          subscriptions.push(await transport.subscriber.subscribe([r.topic], r.consumer, consumerHandler(registry, work, 'saga', r.consumer), subOpts));
        }
      }
      for (const p of participants) {
        const registry = new MessageRegistry([...p.handlers.values()].map((h) => h.message));
        const work = participantWork({
          participant: p,
          wireFormat: o.wireFormat ?? DEFAULT_WIRE_FORMAT,
          inbox,
          outbox,
          sagas: sagaStore,
          graceMs,
          logger,
          onHandled: (count) => events.emit('handled', { participant: p.name, count }),
          tracing,
        });
        subscriptions.push(await transport.subscriber.subscribe(p.topics, p.consumer, consumerHandler(registry, work, 'participant', p.consumer), subOpts));
      }
      if (o.recordDeadLetters ?? true) {
        subscriptions.push(await transport.subscriber.subscribe([DEAD_LETTER_TOPIC], DEAD_LETTER_CONSUMER, recordDeadLetter, subOpts));
      }
      await relay.start();
      await resilience.start(db);
      timers?.start();
      if ((o.inboxRetentionMs ?? 0) >= 0) {
        const retention = o.inboxRetentionMs ?? 7 * 24 * 3600_000;
        pruneTimer = setInterval(() => {
          if (deliveriesSincePrune === 0) return;
          deliveriesSincePrune = 0;
          inbox.prune(db, retention).catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'inbox pruning failed'));
        }, 10 * 60_000);
        pruneTimer.unref();
      }
      logger.info({ role, sagas: defs.all().map((d) => `${d.name} v${d.version}`), participants: participants.map((p) => p.name), transport: transport.features.name }, 'worker started');
      // Not awaited: a warning for the operator, never a reason to delay or fail the start.
      serverWarnings(db).then(
        (ws) => ws.forEach((w) => logger.warn(w)),
        (err: unknown) => logger.debug({ err: errorMessage(err) }, 'server settings not checked'),
      );
    },

    async stop() {
      if (pruneTimer) clearInterval(pruneTimer);
      resilience.stop();
      stopLagWatch?.();
      await Promise.allSettled(subscriptions.splice(0).map((s) => s.close()));
      await Promise.allSettled(batchers.map((b) => b.idle()));
      await timers?.stop();
      await dispatcher.drain();
      await relay.stop();
      logger.info('worker stopped');
    },
  };
}
