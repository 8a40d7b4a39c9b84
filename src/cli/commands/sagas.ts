import { NotFoundError, UsageError } from '../../errors.js';
import { SAGA_STATUSES, type SagaStatus } from '../../saga/state.js';
import { SagaStore } from '../../saga/store.js';
import { BulkheadStore } from '../../resilience/bulkhead-store.js';
import { CircuitStore } from '../../resilience/circuit-store.js';
import type { CliContext } from '../context.js';
import { circuitRows } from './circuits.js';
import { printJson, table } from '../format.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function parseStatus(s: string | undefined): SagaStatus | undefined {
  if (s === undefined) return undefined;
  if (!SAGA_STATUSES.includes(s as SagaStatus)) throw new UsageError(`--status must be one of ${SAGA_STATUSES.join(', ')}, got ${s}`);
  return s as SagaStatus;
}

export function parseLimit(s: string | undefined, max = 10_000): number {
  const n = Number(s ?? '20');
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--limit must be an integer from 1 to ${max}, got ${s}`);
  return n;
}

export function parseSagaId(id: string): string {
  if (!UUID.test(id)) throw new UsageError(`saga id must be a UUID, got ${JSON.stringify(id)}`);
  return id.toLowerCase();
}

export async function sagasList(ctx: CliContext, opts: { status?: string; type?: string; limit?: string; json?: boolean }): Promise<void> {
  const store = new SagaStore(ctx.config.schema);
  const rows = await store.list(ctx.db(), {
    ...(opts.status ? { status: parseStatus(opts.status)! } : {}),
    ...(opts.type ? { type: opts.type } : {}),
    limit: parseLimit(opts.limit),
  });
  const circuits = (await new CircuitStore(ctx.config.schema).list(ctx.db())).filter((c) => c.state !== 'closed' || c.waiting > 0);
  if (opts.json) return printJson(rows);
  process.stdout.write(`${table(rows.map((r) => ({ ...r, reason: r.waiting ?? r.reason })) as never, ['id', 'type', 'status', 'createdAt', 'updatedAt', 'reason'])}\n`);
  // Sagas paused by an outage are running, not stuck: say where they wait.
  if (circuits.length > 0) process.stdout.write(`\ncircuits not closed or with sagas waiting:\n${table(circuitRows(circuits) as never, ['name', 'state', 'waiting', 'failures', 'opens', 'probes', 'probeIn'])}\n`);
  const bulkheads = await new BulkheadStore(ctx.config.schema).list(ctx.db());
  if (bulkheads.length > 0) process.stdout.write(`\nbulkheads (commands in flight of slots; handed: freed for a waiting saga):\n${table(bulkheads as never, ['gate', 'inFlight', 'slots', 'handed'])}\n`);
}

export async function sagasShow(ctx: CliContext, rawId: string, opts: { json?: boolean }): Promise<void> {
  const id = parseSagaId(rawId);
  const store = new SagaStore(ctx.config.schema);
  const db = ctx.db();
  const saga = await store.get(db, id);
  if (!saga) throw new NotFoundError(`no saga ${id}`);
  const steps = await store.history(db, id);
  if (opts.json) return printJson({ ...saga, steps });
  const out = [
    `saga     ${saga.id}`,
    `type     ${saga.type} (definition v${saga.definitionVersion})`,
    `status   ${saga.status}${saga.reason ? ` - ${saga.reason}` : ''}`,
    `tenant   ${saga.tenantId}`,
    `created  ${saga.createdAt.toISOString()}   updated ${saga.updatedAt.toISOString()}${saga.finishedAt ? `   finished ${saga.finishedAt.toISOString()}` : ''}`,
    ...(saga.wakeAt ? [`wakes    ${saga.wakeAt.toISOString()}`] : []),
    `data     ${JSON.stringify(saga.data)}`,
    '',
    table(
      steps.map((s) => ({
        ...s,
        took: s.finishedAt ? `${s.finishedAt.getTime() - s.startedAt.getTime()} ms` : 'running',
      })) as never,
      ['seq', 'step', 'kind', 'attempt', 'status', 'commandType', 'replyType', 'took', 'error'],
    ),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
