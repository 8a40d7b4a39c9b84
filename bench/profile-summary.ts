/**
 * `npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N] [--by function|file|package]`
 *
 * Summarises a V8 CPU profile (what `node --cpu-prof` writes, e.g. through the bench's
 * BENCH_NODE_ARGS) as self time per function, per source file or per package, so that the
 * worker's per-message cost can be read in a terminal and compared between changes. Also prints
 * the inclusive ("total") time of the top functions of this project's own code.
 */
import { readFileSync } from 'node:fs';

process.stdout.on('error', () => process.exit(0)); // piped into head
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values: opts, positionals } = parseArgs({
  options: { top: { type: 'string', default: '40' }, by: { type: 'string', default: 'function' } },
  allowPositionals: true,
});

function where(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (u.startsWith('node:')) return 'node';
  const src = u.indexOf('/src/');
  if (src >= 0) return u.slice(src + 1);
  const ex = u.indexOf('/examples/');
  return ex >= 0 ? u.slice(ex + 1) : u;
}

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from the samples (timeDeltas are microseconds between samples).
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self.entries()].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  // by=owner: each sample is charged to the deepest project frame above it (library and runtime
  // time then counts for the project function that called it).
  const owner = (id: number): Node => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      const w = where(n.callFrame.url);
      if (w.startsWith('src/') || w.startsWith('examples/')) return n;
    }
    return byId.get(id)!;
  };
  const key = (n0: Node): string => {
    const n = opts.by === 'owner' ? owner(n0.id) : n0;
    const f = n.callFrame;
    if (opts.by === 'file') return where(f.url) || f.functionName || '(native)';
    if (opts.by === 'package') {
      const w = where(f.url);
      return w.startsWith('src/') ? 'src' : w || f.functionName || '(native)';
    }
    return `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}`;
  };
  const agg = new Map<string, number>();
  for (const [id, t] of self) {
    const k = key(byId.get(id)!);
    agg.set(k, (agg.get(k) ?? 0) + t);
  }
  // Inclusive time of project functions: a node's samples count once for every distinct project frame above it.
  const incl = new Map<string, number>();
  for (const [id, t] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      const w = where(n.callFrame.url);
      if (!w.startsWith('src/') && !w.startsWith('examples/')) continue;
      const k = `${n.callFrame.functionName || '(anonymous)'} ${w}:${n.callFrame.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + t);
    }
  }
  const top = Number(opts.top);
  const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
  const pct = (us: number) => ((100 * us) / (total - idle)).toFixed(1).padStart(5);
  process.stdout.write(`\n${file}\nsampled ${ms(total)} ms, idle ${ms(idle)} ms, busy ${ms(total - idle)} ms\n-- self time by ${opts.by}\n`);
  for (const [k, t] of [...agg].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${ms(t)} ms ${pct(t)}%  ${k}\n`);
  process.stdout.write(`-- inclusive time, project code\n`);
  for (const [k, t] of [...incl].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${ms(t)} ms ${pct(t)}%  ${k}\n`);
}
