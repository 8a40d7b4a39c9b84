import { userInfo } from 'node:os';
import { UsageError } from '../../errors.js';
import { CircuitOperations } from '../../ops/circuit-ops.js';
import type { CircuitInfo } from '../../resilience/circuit-store.js';
import type { CliContext } from '../context.js';
import { printJson, table } from '../format.js';

/** `sagaflow circuits list | open <name> | close <name>`: the breakers every orchestrator shares. */
const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

function ops(ctx: CliContext): CircuitOperations {
  return new CircuitOperations({ db: ctx.db(), schema: ctx.config.schema, logger: ctx.logger });
}

function circuitName(name: string): string {
  if (!NAME.test(name)) throw new UsageError(`circuit name must be 1-128 letters, digits or _.:-, got ${JSON.stringify(name)}`);
  return name;
}

function actorName(given: string | undefined): string {
  if (given) return given;
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli:unknown';
  }
}

/** One line per breaker: state, who holds it, failures in the window, sagas waiting, next probe. */
export function circuitRows(rows: readonly CircuitInfo[]): Record<string, unknown>[] {
  return rows.map((c) => ({
    name: c.name,
    state: c.forced ? `${c.state} (by hand)` : c.state,
    waiting: c.waiting,
    failures: c.failures,
    opens: c.opens,
    probes: c.probes,
    probeIn: c.state === 'open' && !c.forced && c.retryInMs !== null ? `${Math.max(0, Math.round(c.retryInMs / 1000))} s` : '',
  }));
}

export async function circuitsList(ctx: CliContext, opts: { json?: boolean }): Promise<void> {
  const rows = await ops(ctx).list();
  if (opts.json) return printJson(rows);
  if (rows.length === 0) return void process.stdout.write('no circuit has seen a failure yet (every breaker closed)\n');
  process.stdout.write(`${table(circuitRows(rows) as never, ['name', 'state', 'waiting', 'failures', 'opens', 'probes', 'probeIn'])}\n`);
}

export async function circuitsSet(ctx: CliContext, to: 'open' | 'close', name: string, opts: { reason?: string; actor?: string; json?: boolean }): Promise<void> {
  if (!opts.reason) throw new UsageError(`--reason is required: why the breaker is ${to === 'open' ? 'opened' : 'closed'} by hand (kept in the audit trail)`);
  const o = ops(ctx);
  const actor = { name: actorName(opts.actor) };
  const r = to === 'open' ? await o.open(circuitName(name), actor, opts.reason) : await o.close(circuitName(name), actor, opts.reason);
  if (opts.json) return printJson(r);
  process.stdout.write(
    `circuit ${r.name}: ${r.from ?? 'none'} -> ${r.to}${r.to === 'open' ? ' (held open until closed by hand)' : `, ${r.released} waiting saga(s) released`} (audit ${r.auditId})\n`,
  );
}
