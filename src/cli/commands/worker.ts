import { DefinitionError, UsageError, errorMessage } from '../../errors.js';
import { setupObservability } from '../../observability/setup.js';
import { LatencyProbe } from '../../observability/latency-probe.js';
import { parseNameList, selectParticipants, type ParticipantSelection } from '../../participant/select.js';
import { createTransport } from '../../transport/create.js';
import { createWorker, workerOptionsFrom, type Role } from '../../worker/worker.js';
import type { CliContext } from '../context.js';
import { loadModule } from '../module-loader.js';

const ROLES: readonly Role[] = ['all', 'orchestrator', 'participants'];

/**
 * Runs a worker until SIGTERM/SIGINT, then drains: stops consuming, lets in-flight transactions
 * commit and ack, publishes what is pending, and exits 0. A second signal exits at once.
 */
export interface WorkerCommandOptions {
  readonly module: string;
  readonly role: string;
  readonly name?: string;
  readonly participants?: string;
  readonly excludeParticipants?: string;
}

export async function workerCommand(ctx: CliContext, opts: WorkerCommandOptions): Promise<void> {
  if (!ROLES.includes(opts.role as Role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}, got ${opts.role}`);
  const mod = await loadModule(opts.module, process.env);
  const participants = participantSelection(opts, mod.participants ?? []);
  const { config, logger } = ctx;
  const db = ctx.db();
  const obs = await setupObservability({ config, db, env: process.env, logger, serviceName: `sagaflow-${opts.role}` });
  const transport = await createTransport(config, logger, { clientId: opts.name ?? `sagaflow-${opts.role}` });
  const worker = createWorker({
    db,
    transport,
    module: mod,
    logger,
    options: workerOptionsFrom(config, {
      role: opts.role as Role,
      participants,
      ...(obs.metrics ? { metrics: obs.metrics } : {}),
      ...(obs.tracing ? { tracing: obs.tracing } : {}),
      // The bench's --breakdown sets this: per-hop latency histograms in the worker-stopped line.
      ...(process.env.SAGAFLOW_LATENCY_PROBE === '1' ? { latencyProbe: new LatencyProbe() } : {}),
    }),
  });
  let started = false;
  // Before start: /healthz answers at once and /readyz says "starting" until the worker consumes.
  const ops = await obs.serve({ transport, started: () => started });
  let stopping: Promise<void> | undefined;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without draining');
      process.exit(130);
    }
    logger.info({ signal }, 'draining');
    stopping = (async () => {
      await worker.stop();
      await transport.close();
      await obs.close();
    })().finally(stopped);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A transport that can no longer recover (e.g. a crashed Kafka consumer) ends the process
  // non-zero so its supervisor restarts it, instead of a live process that silently does nothing.
  const fatal = (transport as { events?: { on(e: 'fatal', l: (err: unknown) => void): unknown } }).events;
  let fatalError: unknown;
  fatal?.on('fatal', (err) => {
    fatalError = err;
    logger.fatal({ err: errorMessage(err) }, 'transport failed for good');
    stop('fatal');
  });
  await worker.start();
  started = true;
  const running = opts.role === 'orchestrator' ? [] : selectParticipants(mod.participants ?? [], participants).map((p) => p.name);
  process.stdout.write(
    `${JSON.stringify({ event: 'worker-ready', role: opts.role, participants: running, transport: config.transport, pid: process.pid, ...(ops ? { ops: ops.url } : {}) })}\n`,
  );
  await done;
  // One machine-readable line for supervisors and the bench: what this process did.
  process.stdout.write(`${JSON.stringify({ event: 'worker-stopped', pid: process.pid, stats: worker.stats() })}\n`);
  if (fatalError) throw new Error(`transport failed: ${errorMessage(fatalError)}`);
}

/**
 * `--participants a,b` / `--exclude-participants a,b`, checked against the module before anything
 * connects: a typo is bad usage (exit 2) naming the participants the module has.
 */
function participantSelection(opts: WorkerCommandOptions, all: readonly { name: string }[]): ParticipantSelection | undefined {
  const only = opts.participants === undefined ? undefined : parseNameList(opts.participants);
  const exclude = opts.excludeParticipants === undefined ? undefined : parseNameList(opts.excludeParticipants);
  if (only && exclude) throw new UsageError('--participants and --exclude-participants cannot be combined');
  if (!only && !exclude) return undefined;
  if (opts.role === 'orchestrator') throw new UsageError(`${only ? '--participants' : '--exclude-participants'} makes no sense with --role orchestrator (it runs no participants)`);
  const selection = { only, exclude };
  let chosen: readonly unknown[];
  try {
    chosen = selectParticipants(all, selection);
  } catch (err) {
    if (err instanceof DefinitionError) throw new UsageError(`${only ? '--participants' : '--exclude-participants'}: ${err.message}`);
    throw err;
  }
  if (chosen.length === 0 && opts.role === 'participants') throw new UsageError('--exclude-participants leaves no participant to run with --role participants');
  return selection;
}
