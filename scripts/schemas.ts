import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { schemaFiles } from './wire/generate.js';

/** `npm run schemas`: writes docs/schemas/*.json from the zod schemas (commit the result). */
const root = join(import.meta.dirname, '..', 'docs', 'schemas');
for (const [name, content] of await schemaFiles()) {
  const path = join(root, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  console.log(`wrote docs/schemas/${name}`);
}
