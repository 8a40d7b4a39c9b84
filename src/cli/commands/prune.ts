import { UsageError } from '../../errors.js';
import { prune, type PruneResult } from '../../ops/retention.js';
import type { CliContext } from '../context.js';
import { printJson, table } from '../format.js';

/**
 * `sagaflow prune`: deletes finished work older than the retention windows (SAGAFLOW_RETAIN_*), in
 * small transactions; safe beside running workers and safe to run from cron or a second replica
 * at once (rows are taken with SKIP LOCKED). SIGINT/SIGTERM stop it between batches.
 */
export async function pruneCommand(ctx: CliContext, opts: { dryRun?: boolean; batch?: string; json?: boolean }): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    const batchSize = opts.batch === undefined ? undefined : Number(opts.batch);
    if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 100_000)) {
      throw new UsageError(`--batch must be an integer from 1 to 100000, got ${opts.batch}`);
    }
    const result = await prune(ctx.db(), ctx.config.schema, {
      policy: ctx.config.retention,
      dryRun: opts.dryRun ?? false,
      logger: ctx.logger,
      signal: stop.signal,
      ...(batchSize === undefined ? {} : { batchSize }),
    });
    if (opts.json) return printJson({ dryRun: opts.dryRun ?? false, stopped: stop.signal.aborted, deleted: result });
    process.stdout.write(`${opts.dryRun ? 'would delete' : 'deleted'}${stop.signal.aborted ? ' (stopped early)' : ''}:\n${rowsOf(result)}\n`);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}

function rowsOf(r: PruneResult): string {
  return table(Object.entries(r).map(([t, n]) => ({ table: t, rows: n })), ['table', 'rows']);
}
