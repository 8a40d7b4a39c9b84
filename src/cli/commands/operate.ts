import { userInfo } from 'node:os';
import { UsageError } from '../../errors.js';
import { AuditLog } from '../../ops/audit.js';
import { DeadLetterOperations, type DeadLetterStatus } from '../../ops/dead-letter-ops.js';
import { SagaOperations, type ActionResult, type BulkResult, type Plan } from '../../ops/saga-ops.js';
import { transitionSettings } from '../../transaction/transitions.js';
import type { CliContext } from '../context.js';
import { printJson, table } from '../format.js';
import { loadModule } from '../module-loader.js';
import { parseLimit, parseSagaId } from './sagas.js';

/** Operator commands: replay, cancel, dead letters, audit. Each action is audited with the actor. */
export function actor(name?: string): { name: string } {
  return { name: name ?? `cli:${safeUser()}` };
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

async function sagaOps(ctx: CliContext, modulePath: string): Promise<SagaOperations> {
  const mod = await loadModule(modulePath, process.env);
  return new SagaOperations({
    db: ctx.db(),
    schema: ctx.config.schema,
    sagas: mod.sagas ?? [],
    transitions: transitionSettings(ctx.config),
    logger: ctx.logger,
  });
}

function parseSince(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const rel = /^(\d+)([smhd])$/.exec(s);
  if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[rel[2] as 's']);
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--since must be an ISO time or a duration like 30m, 2h, 1d; got ${s}`);
  return d;
}

function describePlan(verb: string, r: ActionResult): string {
  const p: Plan | undefined = r.plan;
  if (!p) return `${verb}: ${r.outcome}`;
  const lines = [
    `${r.outcome === 'dry-run' ? 'would ' : ''}${verb} saga ${p.sagaId} (${p.sagaType}): ${p.from} -> ${p.to}${r.outcome === 'duplicate' ? ' (already done by this request id)' : ''}`,
  ];
  if (p.resumeAt) lines.push(`  resumes at ${p.resumeAt.step} (${p.resumeAt.phase})`);
  if (p.rerunSucceeded.length) lines.push(`  re-runs steps that already succeeded: ${p.rerunSucceeded.join(', ')}`);
  for (const c of p.commands) lines.push(`  ${r.outcome === 'dry-run' ? 'would send' : 'sends'} ${c.type} to ${c.topic} (${c.step}, ${c.phase}): ${JSON.stringify(c.payload)}`);
  if (p.localStep) lines.push(`  runs local step ${p.localStep} in the worker`);
  return lines.join('\n');
}

export async function replayCommand(
  ctx: CliContext,
  id: string | undefined,
  opts: { module: string; fromStep?: string; force?: boolean; dryRun?: boolean; reason?: string; status?: string; type?: string; since?: string; limit?: string; json?: boolean; actor?: string },
): Promise<void> {
  const ops = await sagaOps(ctx, opts.module);
  const replay = { fromStep: opts.fromStep, force: opts.force, dryRun: opts.dryRun, reason: opts.reason };
  if (id !== undefined) {
    if (opts.status) throw new UsageError('give a saga id or --status failed, not both');
    const r = await ops.replay(parseSagaId(id), actor(opts.actor), replay);
    return opts.json ? printJson(r) : void process.stdout.write(`${describePlan('replay', r)}\n`);
  }
  if (opts.status !== 'failed') throw new UsageError('give a saga id, or --status failed to replay failed sagas in bulk');
  const results: BulkResult[] = await ops.replayFailed(
    { type: opts.type, since: parseSince(opts.since), limit: opts.limit ? parseLimit(opts.limit, 100_000) : undefined },
    actor(opts.actor),
    replay,
  );
  if (opts.json) return printJson(results);
  for (const r of results) {
    process.stdout.write(r.plan ? `${describePlan('replay', { outcome: r.outcome as ActionResult['outcome'], plan: r.plan, auditId: '' })}\n` : `saga ${r.sagaId}: ${r.outcome} ${r.code ?? ''} ${r.message ?? ''}\n`);
  }
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  process.stdout.write(
    `${opts.dryRun ? 'dry run: ' : ''}${results.length} failed saga(s): ${count('accepted')} replayed, ${count('dry-run')} planned, ${count('refused')} refused, ${count('error')} errors\n`,
  );
  if (count('error') > 0) process.exitCode = 1;
}

export async function cancelCommand(ctx: CliContext, id: string, opts: { module: string; reason?: string; dryRun?: boolean; json?: boolean; actor?: string }): Promise<void> {
  if (!opts.reason) throw new UsageError('--reason is required: say why the saga is cancelled');
  const ops = await sagaOps(ctx, opts.module);
  const r = await ops.cancel(parseSagaId(id), actor(opts.actor), { reason: opts.reason, dryRun: opts.dryRun ?? false });
  return opts.json ? printJson(r) : void process.stdout.write(`${describePlan('cancel', r)}\n`);
}

const DL_STATUSES: readonly DeadLetterStatus[] = ['new', 'redriven', 'discarded'];

/** Dead letter ids are the table's bigint ids: anything else is bad usage (exit 2), not an unknown id (exit 3). */
export function parseDeadLetterId(id: string): string {
  if (!/^\d{1,18}$/.test(id)) throw new UsageError(`dead letter id must be a positive integer (the id column of dead-letters list), got ${JSON.stringify(id.slice(0, 100))}`);
  return id;
}

function dlOps(ctx: CliContext): DeadLetterOperations {
  return new DeadLetterOperations({ db: ctx.db(), schema: ctx.config.schema, logger: ctx.logger });
}

export async function deadLettersList(
  ctx: CliContext,
  opts: { status?: string; consumer?: string; reason?: string; type?: string; since?: string; limit?: string; json?: boolean },
): Promise<void> {
  if (opts.status && !DL_STATUSES.includes(opts.status as DeadLetterStatus)) throw new UsageError(`--status must be one of ${DL_STATUSES.join(', ')}`);
  const rows = await dlOps(ctx).list({
    status: opts.status as DeadLetterStatus | undefined,
    consumer: opts.consumer,
    reason: opts.reason,
    type: opts.type,
    since: parseSince(opts.since),
    limit: parseLimit(opts.limit),
  });
  if (opts.json) return printJson(rows);
  process.stdout.write(`${table(rows as never, ['id', 'status', 'reasonCode', 'consumer', 'type', 'messageId', 'timesSeen', 'lastSeenAt', 'error'])}\n`);
}

export async function deadLettersShow(ctx: CliContext, id: string, opts: { json?: boolean }): Promise<void> {
  const d = await dlOps(ctx).show(parseDeadLetterId(id));
  if (opts.json) return printJson(d);
  const lines = Object.entries(d)
    .filter(([k]) => k !== 'body' && k !== 'headers')
    .map(([k, v]) => `${k.padEnd(15)} ${v instanceof Date ? v.toISOString() : (v ?? '-')}`);
  lines.push(`headers         ${JSON.stringify(d.headers)}`, `body (${d.bodyEncoding})`, d.body);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export async function deadLettersRedrive(
  ctx: CliContext,
  id: string,
  opts: { newId?: boolean; force?: boolean; reason?: string; dryRun?: boolean; json?: boolean; actor?: string },
): Promise<void> {
  const r = await dlOps(ctx).redrive(parseDeadLetterId(id), actor(opts.actor), opts);
  if (opts.json) return printJson(r);
  process.stdout.write(`${r.outcome === 'dry-run' ? 'would redrive' : r.outcome === 'duplicate' ? 'already redriven' : 'redriven'} dead letter ${id} as message ${r.messageId}\n`);
}

export async function deadLettersDiscard(ctx: CliContext, id: string, opts: { reason?: string; json?: boolean; actor?: string }): Promise<void> {
  if (!opts.reason) throw new UsageError('--reason is required: say why the dead letter is discarded');
  const r = await dlOps(ctx).discard(parseDeadLetterId(id), actor(opts.actor), { reason: opts.reason });
  if (opts.json) return printJson(r);
  process.stdout.write(`${r.outcome === 'duplicate' ? 'already discarded' : 'discarded'} dead letter ${id}\n`);
}

export async function auditCommand(ctx: CliContext, opts: { target?: string; limit?: string; json?: boolean }): Promise<void> {
  const rows = await new AuditLog(ctx.config.schema).list(ctx.db(), { ...(opts.target ? { targetId: opts.target } : {}), limit: parseLimit(opts.limit) });
  if (opts.json) return printJson(rows);
  process.stdout.write(`${table(rows as never, ['id', 'at', 'actor', 'action', 'targetId', 'outcome', 'reason'])}\n`);
}
