import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';

/**
 * sagaflow's Prometheus metrics over a registry the caller owns (never prom-client's global one,
 * so two workers in one process, or a test, each have their own). Every label set is bounded:
 * saga types, step names, consumers, outcomes and reason codes come from the code and the module,
 * never from a message (no saga id, message id or tenant is ever a label).
 *
 * Counters and histograms are updated on the worker's path at the points it already knows the
 * fact (a transition committed, a batch ran). What lives in the database (outbox backlog, due
 * timers) and the pool are read at scrape time by collect() callbacks, so they cost nothing
 * between scrapes.
 */

export type SagaOutcome = 'completed' | 'compensated' | 'failed';
export type MessageOutcome = 'ok' | 'retry' | 'dead_letter';

/** What the database-backed gauges read at scrape time. */
export interface MetricsSources {
  readonly db: Queryable & { readonly pool?: { totalCount: number; idleCount: number; waitingCount: number } };
  readonly schema: string;
}

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
const SAGA_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 86400];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export class Metrics {
  readonly sagasStarted: Counter<'saga_type'>;
  readonly sagasFinished: Counter<'saga_type' | 'outcome'>;
  readonly sagaDuration: Histogram<'saga_type' | 'outcome'>;
  readonly stepDuration: Histogram<'saga_type' | 'step' | 'kind' | 'status'>;
  readonly messagesHandled: Counter<'consumer' | 'outcome'>;
  readonly inboxDuplicates: Counter<'consumer'>;
  readonly kafkaConsumerLag: Gauge<'consumer' | 'topic'>;
  readonly #lag = new Map<string, Map<number, number>>();
  readonly deadLetters: Counter<'reason'>;
  readonly batchSize: Histogram<'consumer'>;
  readonly transactionDuration: Histogram<'consumer' | 'outcome'>;
  readonly #sources: MetricsSources | undefined;
  #snapshot: Promise<DbSnapshot> | undefined;
  #steps: FinishedStep[] = [];
  #sagas: FinishedSaga[] = [];
  #flushTimer: NodeJS.Timeout | undefined;
  #snapshotAt = 0;

  constructor(
    readonly registry: Registry,
    sources?: MetricsSources,
  ) {
    this.#sources = sources;
    const registers = [registry];
    this.sagasStarted = new Counter({ name: 'sagaflow_sagas_started_total', help: 'Sagas started, by saga type.', labelNames: ['saga_type'], registers });
    this.sagasFinished = new Counter({
      name: 'sagaflow_sagas_finished_total',
      help: 'Sagas that reached a terminal status: completed, compensated (undone after a failure) or failed (needs an operator).',
      labelNames: ['saga_type', 'outcome'],
      registers,
    });
    this.sagaDuration = new Histogram({
      name: 'sagaflow_saga_duration_seconds',
      help: 'Time from a saga’s start to its terminal status (database clock).',
      labelNames: ['saga_type', 'outcome'],
      buckets: SAGA_BUCKETS,
      registers,
    });
    this.stepDuration = new Histogram({
      name: 'sagaflow_step_duration_seconds',
      help: 'Time from a step attempt’s start (command written) to its end (reply, timeout or local result), database clock.',
      labelNames: ['saga_type', 'step', 'kind', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.messagesHandled = new Counter({
      name: 'sagaflow_messages_handled_total',
      help: 'Deliveries handled by a consumer: ok (committed and acknowledged), retry (redelivered later) or dead_letter.',
      labelNames: ['consumer', 'outcome'],
      registers,
    });
    this.inboxDuplicates = new Counter({
      name: 'sagaflow_inbox_duplicates_total',
      help: 'Deliveries recognised as already handled (by the inbox, or as a second copy in the same batch) and acknowledged without effect.',
      labelNames: ['consumer'],
      registers,
    });
    this.deadLetters = new Counter({
      name: 'sagaflow_dead_letters_total',
      help: 'Dead letters this worker recorded in Postgres, by reason code.',
      labelNames: ['reason'],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'sagaflow_batch_size_messages',
      help: 'Messages per batch transaction.',
      labelNames: ['consumer'],
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.transactionDuration = new Histogram({
      name: 'sagaflow_transaction_duration_seconds',
      help: 'Wall time of a batch’s transaction work (claim, decide, write, commit; re-runs included), ok or error.',
      labelNames: ['consumer', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.kafkaConsumerLag = new Gauge({
      name: 'sagaflow_kafka_consumer_lag_messages',
      help: 'Kafka records beyond what the consumer has taken, summed over its partitions, as of each partition’s last fetch.',
      labelNames: ['consumer', 'topic'],
      registers,
    });
    if (!sources) return;
    const read = (): Promise<DbSnapshot> => this.#read();
    new Gauge({
      name: 'sagaflow_outbox_backlog_messages',
      help: 'Rows in the outbox not yet published and deleted (parked rows included).',
      registers,
      async collect() {
        this.set((await read()).outboxRows);
      },
    });
    new Gauge({
      name: 'sagaflow_outbox_oldest_age_seconds',
      help: 'Age of the oldest outbox row; 0 when the outbox is empty. Grows when publishing is stuck.',
      registers,
      async collect() {
        this.set((await read()).outboxOldestSeconds);
      },
    });
    new Gauge({
      name: 'sagaflow_timer_lag_seconds',
      help: 'How long the most overdue saga timer has been due without firing (due vs now); 0 when none is due.',
      registers,
      async collect() {
        this.set((await read()).timerLagSeconds);
      },
    });
    const schema = quoteSchema(sources.schema);
    // A database away must not fail the scrape (the other gauges still answer): no rows, no series.
    const rowsOf = async <R extends object>(sql: string): Promise<R[]> => (await sources.db.query<R>(sql).catch(() => ({ rows: [] as R[] }))).rows;
    new Gauge({
      name: 'sagaflow_gate_waiting_sagas',
      help: 'Running sagas whose next command waits at a gate, by gate and by what holds it (circuit, bulkhead, rate limit).',
      labelNames: ['gate', 'kind'],
      registers,
      async collect() {
        this.reset();
        const rows = await rowsOf<{ gate: string; kind: string; n: number }>(
          `SELECT state->'cursor'->'held'->>'gate' AS gate, split_part(state->'cursor'->'held'->>'reason', ' ', 2) AS kind, count(*)::int AS n
           FROM ${schema}.sagas WHERE state->'cursor'->>'waiting' = 'held' GROUP BY 1, 2`,
        );
        for (const r of rows) if (typeof r.n === 'number') this.set({ gate: r.gate, kind: r.kind === 'rate' ? 'rate_limit' : r.kind }, r.n);
      },
    });
    new Gauge({
      name: 'sagaflow_circuit_state',
      help: 'Circuit breaker state per gate: 0 closed, 1 half-open, 2 open.',
      labelNames: ['gate'],
      registers,
      async collect() {
        this.reset();
        const rows = await rowsOf<{ name: string; state: string }>(`SELECT name, state FROM ${schema}.circuits`);
        for (const r of rows) if (typeof r.name === 'string') this.set({ gate: r.name }, r.state === 'open' ? 2 : r.state === 'half_open' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sagaflow_bulkhead_in_flight',
      help: 'Commands sent and not yet answered per bulkhead gate (slots taken), against its limit (slots).',
      labelNames: ['gate', 'of'],
      registers,
      async collect() {
        this.reset();
        const rows = await rowsOf<{ gate: string; slots: number; taken: number }>(
          `SELECT gate, count(*)::int AS slots, count(command_id)::int AS taken FROM ${schema}.gate_slots GROUP BY gate`,
        );
        for (const r of rows.filter((x) => typeof x.slots === 'number')) {
          this.set({ gate: r.gate, of: 'taken' }, r.taken);
          this.set({ gate: r.gate, of: 'slots' }, r.slots);
        }
      },
    });
    const pool = sources.db.pool;
    if (pool) {
      new Gauge({
        name: 'sagaflow_db_pool_connections',
        help: 'Postgres pool connections of this process, by state (in_use, idle).',
        labelNames: ['state'],
        registers,
        collect() {
          this.set({ state: 'in_use' }, pool.totalCount - pool.idleCount);
          this.set({ state: 'idle' }, pool.idleCount);
        },
      });
      new Gauge({
        name: 'sagaflow_db_pool_waiting_requests',
        help: 'Requests waiting for a Postgres pool connection.',
        registers,
        collect() {
          this.set(pool.waitingCount);
        },
      });
    }
  }

  sagaStarted(sagaType: string): void {
    this.sagasStarted.inc({ saga_type: sagaType });
  }

  sagaFinished(sagaType: string, outcome: SagaOutcome): void {
    this.sagasFinished.inc({ saga_type: sagaType, outcome });
  }

  /** One batch transaction ran: its size, its wall time, and what became of each message. */
  batch(consumer: string, size: number, seconds: number, ok: boolean): void {
    this.batchSize.observe({ consumer }, size);
    this.transactionDuration.observe({ consumer, outcome: ok ? 'ok' : 'error' }, seconds);
  }

  /** A Kafka fetch saw `messages` records of `partition` beyond what the consumer took (per-partition values summed). */
  consumerLag(consumer: string, topic: string, partition: number, messages: number): void {
    const key = `${consumer}\u0000${topic}`;
    let parts = this.#lag.get(key);
    if (!parts) this.#lag.set(key, (parts = new Map()));
    parts.set(partition, messages);
    let sum = 0;
    for (const v of parts.values()) sum += v;
    this.kafkaConsumerLag.set({ consumer, topic }, sum);
  }

  handled(consumer: string, outcome: MessageOutcome, n = 1): void {
    this.messagesHandled.inc({ consumer, outcome }, n);
  }

  /**
   * Durations come from the database clock (steps' started_at/finished_at, the saga's created_at),
   * the only clock every process agrees on: a step starts in the orchestrator and ends in a reply
   * handled by maybe another one. They are read after COMMIT, for everything that finished in the
   * last second, in one query: the hot path only appends to an array.
   */
  finished(steps: readonly FinishedStep[], sagas: readonly FinishedSaga[]): void {
    if (!this.#sources || (steps.length === 0 && sagas.length === 0)) return;
    // Samples, not facts: under a flood keep a bounded amount rather than grow without end.
    if (this.#steps.length < MAX_PENDING) this.#steps.push(...steps);
    if (this.#sagas.length < MAX_PENDING) this.#sagas.push(...sagas);
    this.#flushTimer ??= setTimeout(() => void this.flushDurations(), 1000).unref();
  }

  /** Reads and observes the pending durations now (tests and shutdown call it; errors are dropped: they are samples). */
  async flushDurations(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const steps = this.#steps.splice(0);
    const sagas = this.#sagas.splice(0);
    if (!this.#sources || (steps.length === 0 && sagas.length === 0)) return;
    const schema = quoteSchema(this.#sources.schema);
    try {
      const { rows } = await this.#sources.db.query<{ k: 's' | 'g'; id: string; seq: number; secs: number | null }>(
        `SELECT 's' AS k, saga_id::text AS id, seq, extract(epoch FROM finished_at - started_at)::float8 AS secs
           FROM ${schema}.saga_steps WHERE (saga_id, seq) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))
         UNION ALL
         SELECT 'g', id::text, 0, extract(epoch FROM coalesce(finished_at, now()) - created_at)::float8
           FROM ${schema}.sagas WHERE id = ANY($3::uuid[])`,
        [steps.map((s) => s.sagaId), steps.map((s) => s.seq), sagas.map((s) => s.sagaId)],
      );
      const secs = new Map(rows.map((r) => [`${r.k}:${r.id}:${r.seq}`, r.secs]));
      for (const s of steps) {
        const v = secs.get(`s:${s.sagaId}:${s.seq}`);
        if (v !== null && v !== undefined) this.stepDuration.observe({ saga_type: s.sagaType, step: s.step, kind: s.kind, status: s.status }, Math.max(0, v));
      }
      for (const g of sagas) {
        const v = secs.get(`g:${g.sagaId}:0`);
        if (v !== null && v !== undefined) this.sagaDuration.observe({ saga_type: g.sagaType, outcome: g.outcome }, Math.max(0, v));
      }
    } catch {
      /* a missed sample; the next flush carries on */
    }
  }

  /** The three database-backed gauges share one query per scrape (and per second at most). */
  #read(): Promise<DbSnapshot> {
    const now = Date.now();
    if (this.#snapshot && now - this.#snapshotAt < 1000) return this.#snapshot;
    this.#snapshotAt = now;
    const s = this.#sources!;
    const schema = quoteSchema(s.schema);
    this.#snapshot = s.db
      .query<{ outbox_rows: string; outbox_age: number | null; timer_lag: number | null }>(
        `SELECT (SELECT count(*) FROM ${schema}.outbox) AS outbox_rows,
                (SELECT extract(epoch FROM now() - created_at)::float8 FROM ${schema}.outbox ORDER BY id LIMIT 1) AS outbox_age,
                (SELECT extract(epoch FROM now() - min(wake_at))::float8 FROM ${schema}.sagas WHERE wake_at <= now()) AS timer_lag`,
      )
      .then(({ rows }) => {
        const r = rows[0];
        return { outboxRows: Number(r?.outbox_rows ?? 0), outboxOldestSeconds: Math.max(0, r?.outbox_age ?? 0), timerLagSeconds: Math.max(0, r?.timer_lag ?? 0) };
      })
      // The database is away: the gauges say "unknown" (NaN) and the rest of the scrape still answers.
      .catch(() => {
        this.#snapshotAt = 0;
        return { outboxRows: NaN, outboxOldestSeconds: NaN, timerLagSeconds: NaN };
      });
    return this.#snapshot;
  }
}

const MAX_PENDING = 10_000;

export interface FinishedStep {
  readonly sagaId: string;
  readonly seq: number;
  readonly sagaType: string;
  readonly step: string;
  readonly kind: string;
  readonly status: string;
}

export interface FinishedSaga {
  readonly sagaId: string;
  readonly sagaType: string;
  readonly outcome: SagaOutcome;
}

interface DbSnapshot {
  readonly outboxRows: number;
  readonly outboxOldestSeconds: number;
  readonly timerLagSeconds: number;
}
