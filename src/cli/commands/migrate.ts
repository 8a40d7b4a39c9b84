import { migrate } from '../../db/migrate.js';
import type { CliContext } from '../context.js';
import { loadModule } from '../module-loader.js';

export async function migrateCommand(ctx: CliContext, opts: { module?: string }): Promise<void> {
  const db = ctx.db();
  const result = await migrate(db, ctx.config.schema, { logger: ctx.logger });
  process.stdout.write(
    `schema ${ctx.config.schema} is at migration ${result.current}` +
      (result.applied.length ? ` (applied ${result.applied.join(', ')})` : ' (nothing to apply)') +
      '\n',
  );
  if (opts.module) {
    const mod = await loadModule(opts.module, process.env);
    if (mod.migrate) {
      await mod.migrate(db);
      process.stdout.write(`module ${opts.module} tables are ready\n`);
    }
  }
}
