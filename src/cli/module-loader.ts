import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../errors.js';
import { validateModule, type SagaflowModule } from '../module.js';
import { resolveTypeScriptAsModules } from './typescript-format.js';

/**
 * Loads a user module: a file or a directory with an index. Its default export is the module
 * object or a factory `(ctx) => module` (ctx.env is the environment, passed in, not read there).
 * TypeScript files are loaded through tsx, so users need no build step; a `.ts` file loads from
 * anywhere on disk, whatever package.json (if any) is around it.
 */
export async function loadModule(spec: string, env: Readonly<Record<string, string | undefined>>): Promise<SagaflowModule> {
  const path = resolveModulePath(spec);
  if (/\.(ts|mts|cts)$/.test(path)) await enableTypeScript();
  let ns: Record<string, unknown>;
  try {
    ns = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`cannot load module ${spec}: ${(err as Error).message}`);
  }
  const exported = ns.default ?? ns;
  const mod = (typeof exported === 'function' ? await (exported as (ctx: unknown) => unknown)({ env }) : exported) as SagaflowModule;
  if (!mod || typeof mod !== 'object' || (!Array.isArray(mod.sagas) && !Array.isArray(mod.participants))) {
    throw new UsageError(`module ${spec} exports no sagas or participants (export default { sagas, participants } or a factory)`);
  }
  try {
    validateModule(mod);
  } catch (err) {
    throw new UsageError(`module ${spec} is invalid: ${(err as Error).message}`, 'DEFINITION_INVALID');
  }
  return mod;
}

let typeScriptEnabled: Promise<void> | undefined;

/** Loader hooks are process-wide and pile up when registered again, hence once per process. */
function enableTypeScript(): Promise<void> {
  typeScriptEnabled ??= (async () => {
    const { register } = await import('tsx/esm/api');
    register();
    resolveTypeScriptAsModules();
  })();
  return typeScriptEnabled;
}

function resolveModulePath(spec: string): string {
  const abs = resolve(spec);
  if (existsSync(abs) && statSync(abs).isFile()) return abs;
  for (const candidate of [`${abs}.ts`, `${abs}.js`, `${abs}/index.ts`, `${abs}/index.js`]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new UsageError(`module ${spec} not found (looked for ${abs}, ${abs}.ts, ${abs}/index.ts, ${abs}/index.js)`);
}
