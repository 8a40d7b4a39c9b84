/**
 * `npx tsx bench/kafka-recovery.ts --kill orchestrator|participants [--rate 30] [--warmup-s 15]
 *   [--after-s 40] [--restart-after-ms 1000] [--json]`
 *
 * How long Kafka consumption stalls after a worker crash. The order example runs with two
 * orchestrator and two participants processes (separate workers, as deployed); orders are
 * published at a steady rate; after the warm-up one process of the chosen role is killed with
 * SIGKILL (no LeaveGroup, its session must expire), restarted after `--restart-after-ms` (-1: never)
 * and publishing goes on for `--after-s`. Then it waits for every saga to end and prints:
 *
 * - completions per second around the kill, and the longest run of seconds without any;
 * - recovery: from the kill until every order published before the kill had ended (the orders
 *   stuck in the dead member's partitions are the last), and the latency of orders published
 *   around the kill next to the latency before it;
 * - per consumer group of the killed role: time not Stable (an eager rebalance stops EVERY member,
 *   the healthy replica included), whether the healthy replica kept its partitions, rebalances;
 * - step timeouts that fired (saga_steps rows timed_out), kafkajs "rebalancing" log lines.
 *
 * Worker settings come from this process's environment (e.g. SAGAFLOW_KAFKA_SESSION_TIMEOUT_MS),
 * so a before/after comparison is two runs. Starts a broker of its own unless KAFKA_BROKERS is
 * set. It measures; it never fails on a timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { AssignerProtocol, Kafka, logLevel, type Admin } from 'kafkajs';
import { migrateExample } from '../examples/order/participants.js';
import { PlaceOrder } from '../examples/order/messages.js';
import { makeOrders } from '../examples/order/run.js';
import { createClient } from '../src/client.js';
import { loadConfig } from '../src/config.js';
import { createDb } from '../src/db/db.js';
import { migrate } from '../src/db/migrate.js';
import { silentLogger } from '../src/log.js';
import { sagaIdFor } from '../src/saga/engine.js';
import { createTransport } from '../src/transport/create.js';
import { BenchWorker } from './procs.js';

const { values: a } = parseArgs({
  options: {
    kill: { type: 'string', default: 'participants' },
    rate: { type: 'string', default: '30' },
    'warmup-s': { type: 'string', default: '15' },
    'after-s': { type: 'string', default: '40' },
    'restart-after-ms': { type: 'string', default: '1000' },
    replicas: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});
const role = a.kill as 'orchestrator' | 'participants';
if (role !== 'orchestrator' && role !== 'participants') throw new Error('--kill must be orchestrator or participants');
const rate = Number(a.rate);
const warmupMs = Number(a['warmup-s']) * 1000;
const afterMs = Number(a['after-s']) * 1000;
const restartAfterMs = Number(a['restart-after-ms']);
const replicas = Number(a.replicas);

const GROUPS = { orchestrator: ['orchestrator.order'], participants: ['participant.stock', 'participant.payment', 'participant.shipping'] };
const note = (s: string) => process.stderr.write(`[kafka-recovery] ${s}\n`);

interface GroupSample {
  at: number;
  state: string;
  /** clientId (the worker's --name) -> "topic:partition" list, sorted. */
  members: Map<string, string>;
}

/** Polls describeGroups: the group's state and who holds which partitions, every 100 ms. */
class GroupMonitor {
  readonly samples = new Map<string, GroupSample[]>();
  #stop = false;
  #done: Promise<void> | undefined;

  constructor(
    readonly admin: Admin,
    readonly groups: readonly string[],
  ) {
    for (const g of groups) this.samples.set(g, []);
  }

  start(): void {
    this.#done = (async () => {
      while (!this.#stop) {
        const at = Date.now();
        try {
          const { groups } = await this.admin.describeGroups([...this.groups]);
          for (const g of groups) {
            const members = new Map<string, string>();
            for (const m of g.members) {
              const decoded = m.memberAssignment.length > 0 ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
              const parts = Object.entries(decoded?.assignment ?? {}).flatMap(([t, ps]) => ps.map((p) => `${t.slice(t.lastIndexOf('.') + 1)}:${p}`));
              members.set(`${m.clientId}#${m.memberId.slice(-6)}`, parts.sort().join(','));
            }
            this.samples.get(g.groupId)!.push({ at, state: g.state, members });
          }
        } catch {
          // The broker is busy: the next poll tells.
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - at))));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}

interface GroupReport {
  group: string;
  /** Times the group left Stable after the kill. */
  rebalances: number;
  /** Total time not Stable after the kill (every member of an eager group stops meanwhile). */
  notStableMs: number;
  /** From the kill until the group was Stable again with a full membership. */
  stableAgainMs: number | null;
  /** The healthy replica's member id and partitions are the same before the kill and at the end. */
  healthyKeptPartitions: boolean;
  healthyBefore: string;
  healthyAfter: string;
}

function groupReport(group: string, samples: GroupSample[], killAt: number, healthy: string, expectMembers: number): GroupReport {
  const before = [...samples].reverse().find((s) => s.at < killAt && s.state === 'Stable');
  const last = samples[samples.length - 1];
  const memberOf = (s: GroupSample | undefined) => [...(s?.members ?? [])].find(([k]) => k.startsWith(`${healthy}#`));
  const hb = memberOf(before);
  const ha = memberOf(last);
  let rebalances = 0;
  let notStableMs = 0;
  let stableAgainMs: number | null = null;
  let prev: GroupSample | undefined;
  for (const s of samples.filter((x) => x.at >= killAt)) {
    if (prev && prev.state !== 'Stable') notStableMs += s.at - prev.at;
    if (s.state !== 'Stable' && (!prev || prev.state === 'Stable')) rebalances++;
    if (stableAgainMs === null && s.state === 'Stable' && s.members.size === expectMembers && rebalances > 0) stableAgainMs = s.at - killAt;
    prev = s;
  }
  return {
    group,
    rebalances,
    notStableMs,
    stableAgainMs,
    healthyKeptPartitions: hb !== undefined && ha !== undefined && hb[0] === ha[0] && hb[1] === ha[1],
    healthyBefore: hb ? `${hb[0]} [${hb[1]}]` : 'none',
    healthyAfter: ha ? `${ha[0]} [${ha[1]}]` : 'none',
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  let broker: { brokers: string; stop(): Promise<void> } | undefined;
  let brokers = process.env.KAFKA_BROKERS ?? '';
  if (!brokers) {
    const { startKafkaBroker } = await import('../scripts/kafka/broker.js');
    note('no KAFKA_BROKERS: starting the project broker');
    broker = await startKafkaBroker({ partitions: 6 });
    brokers = broker.brokers;
  }
  const id = randomBytes(4).toString('hex');
  const schema = `krec_${id}`;
  const vars: Record<string, string> = {
    DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    SAGAFLOW_SCHEMA: schema,
    ORDER_EXAMPLE_SCHEMA: `${schema}_ex`,
    SAGAFLOW_TRANSPORT: 'kafka',
    SAGAFLOW_NAMESPACE: `${schema}.`,
    KAFKA_BROKERS: brokers,
    SAGAFLOW_KAFKA_PARTITIONS: '6',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  };
  const db = createDb({ connectionString: vars.DATABASE_URL!, max: 4, applicationName: `${schema}-bench` });
  const kafka = new Kafka({ clientId: `${schema}-monitor`, brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const workers: BenchWorker[] = [];
  let transport: Awaited<ReturnType<typeof createTransport>> | undefined;
  try {
    await migrate(db, schema);
    await migrateExample(db, `${schema}_ex`);
    await admin.connect();
    const rebalanceLines = new Map<string, number>();
    for (const r of ['orchestrator', 'participants'] as const) {
      for (let i = 0; i < replicas; i++) {
        const w = new BenchWorker(r, `${r}-${i}`, vars);
        w.onLogLine = (line) => {
          if (line.includes('rebalancing')) rebalanceLines.set(w.name, (rebalanceLines.get(w.name) ?? 0) + 1);
        };
        workers.push(w);
      }
    }
    const t0 = Date.now();
    await Promise.all(workers.map((w) => w.start()));
    note(`${workers.length} workers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (session settings from the environment: ${
      Object.entries(process.env).filter(([k]) => k.startsWith('SAGAFLOW_KAFKA_')).map(([k, v]) => `${k}=${v}`).join(' ') || 'defaults'
    })`);
    transport = await createTransport(loadConfig(vars), silentLogger(), { clientId: `${schema}-publisher` });
    const client = createClient({ schema, publisher: transport.publisher });
    const groups = GROUPS[role].map((g) => `${schema}.${g}`);
    const monitor = new GroupMonitor(admin, groups);
    monitor.start();

    // Steady publishing: every 100 ms the orders due by now (no catch-up burst after a slow publish).
    const published = new Map<string, number>();
    const start = Date.now();
    const end = start + warmupMs + afterMs;
    let sent = 0;
    const victim = workers.find((w) => w.role === role)!;
    const healthy = workers.find((w) => w.role === role && w !== victim)!;
    let killAt = 0;
    let restartedAt = 0;
    const faults = (async () => {
      await new Promise((r) => setTimeout(r, warmupMs));
      killAt = Date.now();
      await victim.kill();
      note(`killed ${victim.name} (SIGKILL) at +${((killAt - start) / 1000).toFixed(1)} s`);
      if (restartAfterMs < 0) return;
      await new Promise((r) => setTimeout(r, restartAfterMs));
      await victim.start();
      restartedAt = Date.now();
      note(`${victim.name} restarted and ready ${((restartedAt - killAt) / 1000).toFixed(1)} s after the kill`);
    })();
    while (Date.now() < end) {
      const due = Math.floor(((Date.now() - start) / 1000) * rate);
      if (due > sent) {
        const orders = makeOrders(due - sent, { runId: `${schema}-${sent}` });
        const msgs = orders.map((o) => {
          const messageId = randomUUID();
          published.set(sagaIdFor(messageId), Date.now());
          return client.build(PlaceOrder, o, { messageId, sagaId: sagaIdFor(messageId), correlationId: o.orderId });
        });
        await transport.publisher.publish(msgs);
        sent = due;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await faults;
    note(`published ${sent} orders; waiting for every saga to end`);
    const waitStart = Date.now();
    for (;;) {
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".sagas WHERE finished_at IS NOT NULL`);
      if (rows[0]!.n >= sent) break;
      if (Date.now() - waitStart > 180_000) throw new Error(`only ${rows[0]!.n} of ${sent} sagas ended within 180 s`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await monitor.stop();

    const { rows } = await db.query<{ id: string; fin: string }>(
      `SELECT id::text, (extract(epoch FROM finished_at) * 1000)::bigint::text AS fin FROM "${schema}".sagas`,
    );
    const finished = rows.map((r) => ({ pub: published.get(r.id)!, fin: Number(r.fin) })).filter((r) => r.pub !== undefined);
    const perSecond = new Map<number, number>();
    for (const r of finished) {
      const s = Math.floor((r.fin - killAt) / 1000);
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    }
    const lastSecond = Math.floor((Math.max(...finished.map((r) => r.fin)) - killAt) / 1000);
    const timeline: string[] = [];
    let zeroRun = 0;
    let longestZero = 0;
    let longestZeroFrom = 0;
    for (let s = -5; s <= Math.min(lastSecond, Math.floor(afterMs / 1000)); s++) {
      const n = perSecond.get(s) ?? 0;
      timeline.push(`${s}:${n}`);
      if (s >= 0 && n === 0) {
        zeroRun++;
        if (zeroRun > longestZero) {
          longestZero = zeroRun;
          longestZeroFrom = s - zeroRun + 1;
        }
      } else zeroRun = 0;
    }
    const lat = (f: (r: (typeof finished)[number]) => boolean) => finished.filter(f).map((r) => r.fin - r.pub).sort((x, y) => x - y);
    const baseline = lat((r) => r.pub >= start + 3000 && r.pub < killAt - 5000);
    const around = lat((r) => r.pub >= killAt - 2000 && r.pub < killAt + 20_000);
    const inFlight = finished.filter((r) => r.pub < killAt);
    const recoveryMs = Math.max(...inFlight.map((r) => r.fin)) - killAt;
    const timedOut = await db.query<{ step: string; n: number }>(
      `SELECT step_name AS step, count(*)::int AS n FROM "${schema}".saga_steps WHERE status = 'timed_out' GROUP BY 1 ORDER BY 1`,
    );
    const reports = groups.map((g) => groupReport(g.slice(schema.length + 1), monitor.samples.get(g)!, killAt, healthy.name, replicas));
    const result = {
      kill: role,
      victim: victim.name,
      restartAfterMs,
      restartedReadyAfterMs: restartedAt ? restartedAt - killAt : null,
      rate,
      orders: sent,
      settings: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('SAGAFLOW_KAFKA_'))),
      recoveryMs,
      longestZeroSeconds: longestZero,
      longestZeroFromSecond: longestZeroFrom,
      latencyBeforeMs: { p50: percentile(baseline, 50), p99: percentile(baseline, 99), max: baseline[baseline.length - 1] ?? NaN },
      latencyAroundKillMs: { p50: percentile(around, 50), p99: percentile(around, 99), max: around[around.length - 1] ?? NaN },
      stepTimeouts: timedOut.rows.reduce((n, r) => n + r.n, 0),
      stepTimeoutsByStep: Object.fromEntries(timedOut.rows.map((r) => [r.step, r.n])),
      groups: reports,
      rebalanceLogLines: Object.fromEntries(rebalanceLines),
      completionsPerSecond: timeline.join(' '),
    };
    if (a.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      const lines = [
        `kill -9 of ${victim.name}, restarted ${restartAfterMs < 0 ? 'never' : `after ${restartAfterMs} ms (ready ${(result.restartedReadyAfterMs ?? 0) / 1000} s after the kill)`}; ${sent} orders at ${rate}/s`,
        `settings: ${JSON.stringify(result.settings)}`,
        `recovery (kill -> every order published before the kill ended): ${(recoveryMs / 1000).toFixed(1)} s`,
        `longest run without any completion: ${longestZero} s${longestZero > 0 ? ` (seconds ${longestZeroFrom} to ${longestZeroFrom + longestZero - 1} after the kill; completions resumed in second ${longestZeroFrom + longestZero})` : ''}`,
        `latency of orders published 3 s after the start to 5 s before the kill p50/p99/max: ${result.latencyBeforeMs.p50}/${result.latencyBeforeMs.p99}/${result.latencyBeforeMs.max} ms`,
        `latency of orders published from 2 s before to 20 s after the kill p50/p99/max: ${result.latencyAroundKillMs.p50}/${result.latencyAroundKillMs.p99}/${result.latencyAroundKillMs.max} ms`,
        `step timeouts fired: ${result.stepTimeouts} ${JSON.stringify(result.stepTimeoutsByStep)}`,
        ...reports.map(
          (r) =>
            `group ${r.group}: ${r.rebalances} rebalance(s), not Stable for ${(r.notStableMs / 1000).toFixed(1)} s, Stable again with ${replicas} members ${
              r.stableAgainMs === null ? 'never' : `${(r.stableAgainMs / 1000).toFixed(1)} s`
            } after the kill; healthy ${healthy.name} kept its partitions: ${r.healthyKeptPartitions ? 'yes' : 'no'} (${r.healthyBefore} -> ${r.healthyAfter})`,
        ),
        `kafkajs "rebalancing" log lines: ${JSON.stringify(result.rebalanceLogLines)}`,
        `completions per second (second after the kill: count): ${result.completionsPerSecond}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(result)}\n`);
    }
  } finally {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await transport?.close().catch(() => {});
    const topics = (await admin.listTopics().catch(() => [] as string[])).filter((t) => t.startsWith(`${schema}.`));
    if (topics.length) await admin.deleteTopics({ topics }).catch(() => {});
    await admin.disconnect().catch(() => {});
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await db.query(`DROP SCHEMA IF EXISTS "${schema}_ex" CASCADE`).catch(() => {});
    await db.close();
    await broker?.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
