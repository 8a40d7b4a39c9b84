import { register } from 'node:module';

/**
 * tsx decides whether a `.ts` file is an ES module the way Node decides for `.js`: by the nearest
 * package.json's "type". A module outside this project (no package.json around it, or one without
 * "type": "module") is therefore compiled as CommonJS and cannot load (Node refuses to require the
 * ES modules it imports, "in a cycle"). A sagaflow module is ESM by contract (`export default`), so
 * every `.ts` file outside node_modules is resolved as an ES module; `.cts` stays CommonJS.
 *
 * tsx's own `tsImport` would load such a file too, but in a separate module graph: the file would
 * get its own copy of sagaflow's classes, and the worker's `instanceof SagaflowError` would no
 * longer recognise a PermanentError its handlers throw. This resolve hook keeps one graph.
 *
 * The hook runs in Node's loader thread, so it is plain JavaScript handed over as a data: URL.
 */
const HOOK = `
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  if (resolved.format !== 'commonjs' || !resolved.url.startsWith('file:')) return resolved;
  // tsx marks an import from a file it takes for CommonJS with queries (its named-export preparse),
  // some of them inside the path: the file is what comes before the first one.
  const file = new URL(resolved.url);
  file.search = '';
  file.pathname = file.pathname.split('%3F')[0];
  if (!file.pathname.endsWith('.ts') || file.pathname.includes('/node_modules/')) return resolved;
  return { ...resolved, url: file.href, format: 'module' };
}
`;

/**
 * Registers the hook (after tsx's, so it sees tsx's answer). Process-wide by nature, like tsx's
 * own registration; the caller registers it once.
 */
export function resolveTypeScriptAsModules(): void {
  register(`data:text/javascript,${encodeURIComponent(HOOK)}`);
}
