import { writeFileSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import { SagaMigrations } from '../../ops/migrate-ops.js';
import { SagaStore } from '../../saga/store.js';
import { historyOf } from '../../ops/history.js';
import type { CliContext } from '../context.js';
import { printJson, table } from '../format.js';
import { loadModule } from '../module-loader.js';
import { actor } from './operate.js';
import { parseLimit, parseSagaId } from './sagas.js';

/** Definition versions: `sagas migrate` (operators) and `history export` (tests of a changed saga). */

function parseVersion(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a definition version (an integer >= 1), got ${s}`);
  return n;
}

export async function sagasMigrate(
  ctx: CliContext,
  opts: { module: string; type: string; from: string; to: string; dryRun?: boolean; reason?: string; limit?: string; actor?: string; json?: boolean },
): Promise<void> {
  const mod = await loadModule(opts.module, process.env);
  const ops = new SagaMigrations({ db: ctx.db(), schema: ctx.config.schema, sagas: mod.sagas ?? [], migrations: mod.migrations ?? [], logger: ctx.logger });
  const results = await ops.run(
    {
      type: opts.type,
      from: parseVersion('--from', opts.from),
      to: parseVersion('--to', opts.to),
      dryRun: opts.dryRun,
      reason: opts.reason,
      ...(opts.limit ? { limit: parseLimit(opts.limit, 1_000_000) } : {}),
    },
    actor(opts.actor),
  );
  if (opts.json) return printJson(results);
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  const verb = opts.dryRun ? 'would migrate' : 'migrated';
  process.stdout.write(
    `${results.length ? `${table(results as never, ['sagaId', 'outcome', 'at', 'message'])}\n` : ''}${verb} ${count(opts.dryRun ? 'dry-run' : 'accepted')}, refused ${count('refused')}, skipped ${count('skipped')} (${opts.type} v${opts.from} -> v${opts.to})\n`,
  );
  // Refusals need an operator's eye: the command fails so scripts notice.
  if (count('refused') > 0) process.exitCode = 4;
}

export async function historyExport(ctx: CliContext, rawId: string, opts: { out?: string }): Promise<void> {
  const id = parseSagaId(rawId);
  const history = await historyOf(ctx.db(), new SagaStore(ctx.config.schema), id);
  const text = `${JSON.stringify(history, null, 2)}\n`;
  if (opts.out) {
    writeFileSync(opts.out, text);
    process.stderr.write(`wrote ${history.inputs.length} inputs of saga ${id} to ${opts.out}\n`);
  } else process.stdout.write(text);
}
