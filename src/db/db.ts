import pg from 'pg';
import { DependencyError } from '../errors.js';
import { redactUrl, type Logger } from '../log.js';

/** The one-method database port every store takes; a pool and a transaction client both fit it. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
}

/** A transaction in progress: statements, and a last statement that takes the COMMIT along. */
export interface Tx extends Queryable {
  /**
   * Sends `text` and COMMIT back to back on the pipelined connection: the transaction's last
   * statement and its commit cost one round trip. If the statement fails, the COMMIT finds the
   * transaction aborted and rolls it back, so nothing of it is kept; the statement's error is thrown
   * here. Nothing may be issued after it, and the caller must not throw afterwards expecting a
   * rollback: the commit is already on its way.
   */
  queryAndCommit<R extends object = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface Db extends Queryable {
  /**
   * Runs fn in BEGIN/COMMIT on one client; ROLLBACK on throw. The commit is explicit and visible
   * here, or in fn's `tx.queryAndCommit` (then it rode with fn's last statement).
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>, opts?: { isolation?: 'read committed' | 'repeatable read' | 'serializable' }): Promise<T>;
  /** A dedicated client for LISTEN (never returned to the pool while listening). */
  connectListener(): Promise<pg.Client>;
  /** A pooled client for session-level work (advisory locks over several transactions); release it. */
  connect(): Promise<pg.PoolClient>;
  close(): Promise<void>;
  readonly pool: pg.Pool;
}

export interface DbOptions {
  readonly connectionString: string;
  readonly applicationName?: string;
  /** Pool size. Small on purpose: batching, not connections, is what buys throughput here. */
  readonly max?: number;
  /** Server-side statement_timeout (ms), so a blocked lock or a runaway query cannot hang a worker. */
  readonly statementTimeoutMs?: number;
  /** Client-side timeout for a query's answer: catches a silent network blackhole (node-postgres#1454). */
  readonly queryTimeoutMs?: number;
  readonly connectionTimeoutMs?: number;
  readonly logger?: Logger;
  /** Where the connection string came from (`DATABASE_URL`): named in connection errors as the thing to fix. */
  readonly urlSetting?: string;
}

/** Errors of establishing a connection (never of a query on an established one): they name Postgres. */
const CONNECT_FAILURE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ERR_INVALID_URL', '28P01', '28000', '3D000', '57P03', '53300']);

function isConnectFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECT_FAILURE_CODES.has(code)) return true;
  return err instanceof Error && /timeout exceeded when trying to connect|connection timeout/i.test(err.message);
}

export function createDb(opts: DbOptions): Db {
  const config: pg.PoolConfig = {
    connectionString: opts.connectionString,
    application_name: opts.applicationName ?? 'sagaflow',
    max: opts.max ?? 8,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000,
    statement_timeout: opts.statementTimeoutMs ?? 30_000,
    query_timeout: opts.queryTimeoutMs ?? 60_000,
    idle_in_transaction_session_timeout: 60_000,
    keepAlive: true,
    idleTimeoutMillis: 30_000,
    // Pipeline mode: a query is written as soon as it is issued, not after the previous answer came
    // back, so a transaction's BEGIN travels with its first statement (one round trip fewer per
    // transaction: on a busy machine each round trip also costs a wake-up of this process).
    pipeline: true,
  };
  const pool = new pg.Pool(config);
  // A bare "connect ECONNREFUSED 127.0.0.1:5999" or "Invalid URL" names neither Postgres nor the
  // setting to fix; the DependencyError does (and stays systemic for the callers that classify it).
  const explain = (err: unknown): unknown => (isConnectFailure(err) ? new DependencyError('Postgres', redactUrl(opts.connectionString), opts.urlSetting, err) : err);
  // An idle client whose connection dies is reported here; without a listener Node would crash
  // (node-postgres#1324). The pool drops the client and makes a new one on the next checkout.
  pool.on('error', (err) => opts.logger?.warn({ err: err.message }, 'idle database connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (err) => opts.logger?.warn({ err: err.message }, 'database connection error'));
  });

  const connect = (): Promise<pg.PoolClient> =>
    pool.connect().catch((err: unknown) => {
      throw explain(err);
    });

  const transaction: Db['transaction'] = async (fn, txOpts) => {
    const client = await connect();
    let broken: unknown;
    // The COMMIT fn sent along with its last statement, if it did.
    let commit: Promise<unknown> | undefined;
    const tx: Tx = {
      query: (text, values) => {
        if (commit) return Promise.reject(new Error(`statement after the transaction's commit: ${text.slice(0, 60)}`));
        return client.query(text, values as unknown[]) as never;
      },
      queryAndCommit: (text, values) => {
        if (commit) return Promise.reject(new Error(`statement after the transaction's commit: ${text.slice(0, 60)}`));
        const last = client.query(text, values as unknown[]);
        commit = client.query('COMMIT');
        commit.catch(() => undefined); // observed below; never an unhandled rejection
        return last as never;
      },
    };
    try {
      // Not awaited: BEGIN goes out now and the first statement right behind it on the same
      // connection, answered in order. A fresh pooled connection is idle, where BEGIN cannot fail;
      // on a broken one every statement behind it fails as well, so none runs outside the transaction.
      const begin = client.query(txOpts?.isolation ? `BEGIN ISOLATION LEVEL ${txOpts.isolation.toUpperCase()}` : 'BEGIN');
      begin.catch(() => undefined); // observed by the await below; never an unhandled rejection
      const result = await fn(tx);
      await begin;
      const done = (await (commit ?? client.query('COMMIT'))) as { command?: string };
      // COMMIT answers ROLLBACK when the transaction was aborted: a failed statement whose error fn
      // caught and went on. The caller must not believe it committed.
      if (done.command === 'ROLLBACK') throw new Error('the transaction was rolled back at COMMIT: one of its statements had failed');
      return result;
    } catch (err) {
      try {
        // A COMMIT already sent ends the transaction either way (on an aborted one it rolls back);
        // otherwise roll back here.
        await (commit ?? client.query('ROLLBACK'));
      } catch (rollbackErr) {
        // The connection is gone or unusable: destroy it instead of returning it to the pool.
        broken = rollbackErr;
      }
      throw err;
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  };

  return {
    pool,
    query: (text, values) =>
      pool.query(text, values as unknown[]).catch((err: unknown) => {
        throw explain(err);
      }) as never,
    transaction,
    connect,
    connectListener: async () => {
      try {
        const client = new pg.Client({ ...config, pipeline: false, application_name: `${config.application_name}-listen` });
        client.on('error', (err) => opts.logger?.warn({ err: err.message }, 'listener connection error'));
        await client.connect();
        return client;
      } catch (err) {
        throw explain(err);
      }
    },
    close: () => pool.end(),
  };
}

/** Schema names become part of SQL text, so they are checked against a strict pattern once. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function quoteSchema(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(`invalid schema name ${JSON.stringify(schema)}: use lower-case letters, digits and _`);
  }
  return `"${schema}"`;
}
