import { readFileSync } from 'node:fs';
import { createClient } from '../../client.js';
import { SagaflowError, UsageError } from '../../errors.js';
import { describeIssues } from '../../messages/envelope.js';
import { createTransport } from '../../transport/create.js';
import { moduleRegistry } from '../../module.js';
import type { CliContext } from '../context.js';
import { loadModule } from '../module-loader.js';

export interface PublishOptions {
  module: string;
  data?: string;
  file?: string;
  sagaId?: string;
  tenant?: string;
  outbox?: boolean;
  json?: boolean;
}

/**
 * Publishes messages of one type, validated against the module's schemas first: with --file, every
 * line is checked before anything is sent, so a bad file publishes nothing.
 */
export async function publishCommand(ctx: CliContext, type: string, opts: PublishOptions): Promise<void> {
  if ((opts.data === undefined) === (opts.file === undefined)) throw new UsageError('give exactly one of --data <json> or --file <ndjson>');
  const mod = await loadModule(opts.module, process.env);
  const registry = moduleRegistry(mod);
  const def = registry.get(type);
  if (!def) throw new UsageError(`unknown message type ${type}; the module knows: ${registry.types().join(', ')}`);
  if (!def.topic) throw new UsageError(`${type} is a reply (it has no topic); publish commands or saga start messages`);
  const lines = opts.data !== undefined ? [opts.data] : readLines(opts.file!);
  const payloads: unknown[] = [];
  const errors: string[] = [];
  lines.forEach((line, i) => {
    const where = opts.file ? `line ${i + 1}: ` : '';
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      errors.push(`${where}not JSON (${(err as Error).message})`);
      return;
    }
    const parsed = def.schema.safeParse(value);
    if (!parsed.success) errors.push(`${where}${describeIssues(parsed.error)}`);
    else payloads.push(value);
  });
  if (errors.length > 0) {
    throw new UsageError(`${type}: ${errors.length} invalid message(s), nothing published:\n  ${errors.slice(0, 20).join('\n  ')}`, 'SCHEMA_INVALID');
  }
  const saga = (mod.sagas ?? []).find((s) => s.start.type === type);
  const db = opts.outbox ? ctx.db() : undefined;
  const transport = opts.outbox ? undefined : await createTransport(ctx.config, ctx.logger, { clientId: 'sagaflow-publish' });
  const client = createClient({ schema: ctx.config.schema, wireFormat: ctx.config.wireFormat, ...(transport ? { publisher: transport.publisher } : {}), ...(db ? { db } : {}) });
  const results: { messageId: string; sagaId?: string }[] = [];
  try {
    for (const payload of payloads) {
      const send = { ...(opts.sagaId && payloads.length === 1 ? { sagaId: opts.sagaId } : {}), ...(opts.tenant ? { tenantId: opts.tenant } : {}) };
      results.push(saga ? await client.startSaga(saga, payload as never, send) : await client.send(def, payload as never, send));
    }
  } catch (err) {
    throw err instanceof SagaflowError ? err : new SagaflowError('PUBLISH_FAILED', `publish failed after ${results.length} message(s): ${(err as Error).message}`);
  } finally {
    await transport?.close();
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ type, published: results.length, messages: results })}\n`);
  else {
    for (const r of results) process.stdout.write(`${type} ${r.messageId}${r.sagaId ? ` saga ${r.sagaId}` : ''}\n`);
    process.stdout.write(`published ${results.length} ${type} message(s)${opts.outbox ? ' through the outbox' : ''}\n`);
  }
}

function readLines(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.length === 0) throw new UsageError(`${file} has no messages`);
  return lines;
}
