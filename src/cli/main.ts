import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { packageRoot } from '../db/migrate.js';
import { errorMessage } from '../errors.js';
import { circuitsList, circuitsSet } from './commands/circuits.js';
import { devCommand } from './commands/dev.js';
import { healthCommand } from './commands/health.js';
import { migrateCommand } from './commands/migrate.js';
import { auditCommand, cancelCommand, deadLettersDiscard, deadLettersList, deadLettersRedrive, deadLettersShow, replayCommand } from './commands/operate.js';
import { publishCommand } from './commands/publish.js';
import { pruneCommand } from './commands/prune.js';
import { sagasList, sagasShow } from './commands/sagas.js';
import { serveCommand } from './commands/serve.js';
import { workerCommand, type WorkerCommandOptions } from './commands/worker.js';
import { createContext, type CliContext } from './context.js';
import { exitCodeFor } from './errors.js';

/**
 * The `sagaflow` command line. Configuration comes from the environment (see README), a few
 * flags override it. Every failure prints one clear line and exits non-zero; no stack traces
 * unless SAGAFLOW_DEBUG=1.
 */
const version = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;

function withContext<A extends unknown[]>(fn: (ctx: CliContext, ...args: A) => Promise<void>, appName?: string) {
  return async (...args: A): Promise<void> => {
    const globals = program.opts<{ schema?: string; transport?: string }>();
    const ctx = createContext(globals, appName);
    try {
      await fn(ctx, ...args);
    } finally {
      await ctx.close();
    }
  };
}

const program = new Command('sagaflow')
  .description('Saga orchestration worker on RabbitMQ or Kafka with PostgreSQL state')
  .version(version)
  .option('--schema <name>', 'Postgres schema for sagaflow tables (env SAGAFLOW_SCHEMA, default sagaflow)')
  .option('--transport <name>', 'memory | rabbitmq | kafka (env SAGAFLOW_TRANSPORT)')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

program
  .command('migrate')
  .description('apply missing migrations (safe to run from several processes at once)')
  .option('--module <file>', 'also create the tables of this module (e.g. examples/order)')
  .action(withContext((ctx, opts: { module?: string }) => migrateCommand(ctx, opts)));

program
  .command('health')
  .description('exit 0 if Postgres answers and the schema is current (and, with --broker, the broker accepts a connection)')
  .option('--broker', 'also connect to the configured broker')
  .action(withContext((ctx, opts: { broker?: boolean }) => healthCommand(ctx, opts)));

program
  .command('worker')
  .description('run the sagas and participants a module exports')
  .requiredOption('--module <file>', 'module exporting sagas and participants (e.g. examples/order)')
  .option('--role <role>', 'all | orchestrator | participants', 'all')
  .option('--participants <names>', 'run only these participants (comma-separated), e.g. payment,stock')
  .option('--exclude-participants <names>', 'run all participants but these (comma-separated): another service consumes their queues')
  .option('--name <name>', 'client name shown by the broker')
  .action(withContext((ctx, opts: WorkerCommandOptions) => workerCommand(ctx, opts), 'sagaflow-worker'));

program
  .command('serve')
  .description('run the admin HTTP API (tokens from SAGAFLOW_ADMIN_TOKENS)')
  .requiredOption('--module <file>', 'module that defines the sagas (replay and cancel decide with it)')
  .option('--host <host>', 'address to listen on (env SAGAFLOW_ADMIN_HOST, default 127.0.0.1)')
  .option('--port <port>', 'port, 0 for any free one (env SAGAFLOW_ADMIN_PORT, default 8080)')
  .action(withContext((ctx, opts: { module: string; host?: string; port?: string }) => serveCommand(ctx, opts), 'sagaflow-admin'));

program
  .command('dev')
  .description('local development in one process: embedded PostgreSQL (unless DATABASE_URL), memory transport, migrations, the module, the admin API with a one-time token')
  .requiredOption('--module <file>', 'module exporting sagas and participants (e.g. examples/order)')
  .option('--host <host>', 'address of the admin API (default 127.0.0.1)')
  .option('--port <port>', 'port of the admin API, 0 for any free one (env SAGAFLOW_ADMIN_PORT, default 8080)')
  .action(withContext((ctx, opts: { module: string; host?: string; port?: string }) => devCommand(ctx, opts), 'sagaflow-dev'));

program
  .command('publish <type>')
  .description('publish messages of a type, validated against the module schemas')
  .requiredOption('--module <file>', 'module that defines the message type')
  .option('--data <json>', 'one payload as JSON')
  .option('--file <ndjson>', 'one payload per line')
  .option('--saga-id <uuid>', 'saga id for a single start message (default: derived from the message id)')
  .option('--tenant <id>', 'tenant id (default "default")')
  .option('--outbox', 'write through the outbox (a running worker relays it) instead of publishing directly')
  .option('--json', 'print the result as JSON')
  .action(withContext((ctx, type: string, opts) => publishCommand(ctx, type, opts)));

program
  .command('prune')
  .description('delete finished sagas, inbox rows, resolved dead letters and audit rows older than the retention windows (SAGAFLOW_RETAIN_*)')
  .option('--dry-run', 'count what would be deleted, delete nothing')
  .option('--batch <n>', 'rows per transaction (default 2000)')
  .option('--json', 'print JSON')
  .action(withContext((ctx, opts) => pruneCommand(ctx, opts)));

const sagas = program.command('sagas').description('inspect sagas');
sagas
  .command('list')
  .option('--status <status>', 'running | compensating | completed | compensated | failed')
  .option('--type <type>', 'saga type')
  .option('--limit <n>', 'at most n rows (newest first)', '20')
  .option('--json', 'print JSON')
  .action(withContext((ctx, opts) => sagasList(ctx, opts)));
sagas
  .command('show <id>')
  .description('a saga with its step timeline (attempts, replies, errors)')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string, opts) => sagasShow(ctx, id, opts)));

const circuits = program.command('circuits').description('the circuit breakers every orchestrator shares');
circuits
  .command('list')
  .description('each breaker: state, sagas waiting at it, failures in its window, opens, probes')
  .option('--json', 'print JSON')
  .action(withContext((ctx, opts) => circuitsList(ctx, opts)));
for (const [verb, what] of [
  ['open', 'hold a breaker open (sagas about to send through it wait) until closed by hand'],
  ['close', 'close a breaker now and release the sagas waiting at it at a controlled rate'],
] as const) {
  circuits
    .command(`${verb} <name>`)
    .description(what)
    .option('--reason <text>', 'why (required, kept in the audit trail)')
    .option('--actor <name>', 'who, for the audit trail (default cli:<user>)')
    .option('--json', 'print JSON')
    .action(withContext((ctx, name: string, opts) => circuitsSet(ctx, verb, name, opts)));
}

program
  .command('replay [id]')
  .description('resume a failed saga where it failed (or, with --status failed, every failed saga)')
  .requiredOption('--module <file>', 'module that defines the saga')
  .option('--from-step <step>', 're-run from this step (steps that succeeded need --force)')
  .option('--force', 'allow re-running steps that already succeeded')
  .option('--dry-run', 'print what would be sent and re-run, change nothing')
  .option('--reason <text>', 'why (kept in the audit trail)')
  .option('--status <status>', 'bulk: only "failed"')
  .option('--type <type>', 'bulk: saga type')
  .option('--since <time>', 'bulk: created since (ISO time or 30m, 2h, 1d)')
  .option('--limit <n>', 'bulk: at most n sagas')
  .option('--actor <name>', 'who, for the audit trail (default cli:<user>)')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string | undefined, opts) => replayCommand(ctx, id, opts)));

program
  .command('cancel <id>')
  .description('stop a running saga and compensate what it completed')
  .requiredOption('--module <file>', 'module that defines the saga')
  .option('--reason <text>', 'why (required, kept in the audit trail)')
  .option('--dry-run', 'print what would happen, change nothing')
  .option('--actor <name>', 'who, for the audit trail')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string, opts) => cancelCommand(ctx, id, opts)));

const dl = program.command('dead-letters').description('inspect and resolve dead-lettered messages');
dl.command('list')
  .option('--status <status>', 'new | redriven | discarded')
  .option('--consumer <name>', 'consumer that gave up on it')
  .option('--reason <code>', 'reason code, e.g. SCHEMA_INVALID')
  .option('--type <type>', 'message type')
  .option('--since <time>', 'last seen since (ISO time or 30m, 2h, 1d)')
  .option('--limit <n>', 'at most n rows (newest first)', '20')
  .option('--json', 'print JSON')
  .action(withContext((ctx, opts) => deadLettersList(ctx, opts)));
dl.command('show <id>')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string, opts) => deadLettersShow(ctx, id, opts)));
dl.command('redrive <id>')
  .description('publish the message again to its original topic (same id: processed once)')
  .option('--new-id', 'give it a new message id (a deliberate second processing)')
  .option('--force', 'redrive a dead letter that was already redriven or discarded')
  .option('--reason <text>', 'why (kept in the audit trail)')
  .option('--dry-run', 'print what would be published')
  .option('--actor <name>', 'who, for the audit trail')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string, opts) => deadLettersRedrive(ctx, id, opts)));
dl.command('discard <id>')
  .option('--reason <text>', 'why (required)')
  .option('--actor <name>', 'who, for the audit trail')
  .option('--json', 'print JSON')
  .action(withContext((ctx, id: string, opts) => deadLettersDiscard(ctx, id, opts)));

program
  .command('audit')
  .description('operator actions, newest first')
  .option('--target <id>', 'saga id or dead letter id')
  .option('--limit <n>', 'at most n rows', '20')
  .option('--json', 'print JSON')
  .action(withContext((ctx, opts) => auditCommand(ctx, opts)));

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (unknown option, missing argument, help, version).
      return err.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(`sagaflow: ${errorMessage(err)}\n`);
    if (process.env.SAGAFLOW_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return exitCodeFor(err);
  }
}

const code = await main(process.argv);
process.exitCode = code;
// Normally the process ends here by itself; if a library left a handle open, do not hang.
setTimeout(() => process.exit(code), 3000).unref();
