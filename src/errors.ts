/**
 * Every error sagaflow raises carries a stable string `code` and says whether trying again can help.
 * Transports and the worker decide ack / retry / dead-letter from these two fields alone, so a
 * message-specific problem (poison) is never confused with a systemic one (the database is down).
 */
export type ReasonCode =
  | 'DECODE_ERROR'
  | 'MALFORMED_JSON'
  | 'INVALID_ENVELOPE'
  | 'SCHEMA_INVALID'
  | 'UNKNOWN_TYPE'
  | 'UNSUPPORTED_VERSION'
  | 'PAYLOAD_TOO_LARGE'
  | 'ID_CONFLICT'
  | 'UNKNOWN_SAGA'
  | 'TENANT_MISMATCH'
  | 'UNSUPPORTED_CONTENT_TYPE'
  | 'EMPTY_VALUE'
  | 'HANDLER_ERROR'
  | 'MAX_ATTEMPTS_EXCEEDED'
  | 'DELIVERY_LIMIT'
  | 'UNROUTABLE'
  | 'PUBLISH_TIMEOUT'
  | 'PUBLISH_FAILED'
  | 'CHANNEL_CLOSED'
  | 'SYSTEMIC'
  | 'CONFIG_INVALID'
  | 'DEFINITION_INVALID'
  | 'DEFINITION_MISMATCH'
  | 'MESSAGE_TOO_LARGE'
  | 'INVALID_RECORD'
  | 'SCHEMA_TOO_NEW'
  | 'MIGRATION_FAILED'
  | 'CONCURRENT_UPDATE'
  | 'INVALID_STATE'
  | 'NOT_FOUND'
  | 'NEEDS_FORCE'
  | 'UNEXPECTED_REPLY'
  | 'UNMATCHED_REPLY'
  | 'UNSTORABLE_TEXT'
  | 'OUT_OF_ORDER'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'USAGE';

export class SagaflowError extends Error {
  readonly code: ReasonCode;
  /** true: the same input may succeed later (retry with backoff); false: it never will (dead-letter). */
  readonly retryable: boolean;
  /**
   * false for failures that are not the message's fault (database or broker unavailable): a retry of
   * such a failure must not use up the message's attempt budget, or an outage would empty the queue.
   */
  readonly countsAsAttempt: boolean;

  constructor(
    code: ReasonCode,
    message: string,
    opts: { retryable?: boolean; countsAsAttempt?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.countsAsAttempt = opts.countsAsAttempt ?? true;
  }
}

/** A problem with one message that no retry can fix: dead-letter it at once with this code. */
export class PermanentError extends SagaflowError {
  constructor(code: ReasonCode, message: string, cause?: unknown) {
    super(code, message, { retryable: false, cause });
  }
}

/** A problem with one message that may go away (a reply before its saga is visible, a flaky handler). */
export class RetryableError extends SagaflowError {
  constructor(code: ReasonCode, message: string, cause?: unknown) {
    super(code, message, { retryable: true, cause });
  }
}

/** The database or the broker is unavailable: retry later without charging the message an attempt. */
export class SystemicError extends SagaflowError {
  constructor(message: string, cause?: unknown) {
    super('SYSTEMIC', message, { retryable: true, countsAsAttempt: false, cause });
  }
}

/**
 * A saga, participant, message or module definition that cannot work (DEFINITION_INVALID, found by
 * `build()` and at startup), or a stored saga that no longer fits the loaded definition
 * (DEFINITION_MISMATCH, e.g. its step was renamed while it was in flight). Never retryable.
 */
export class DefinitionError extends SagaflowError {
  constructor(message: string, code: 'DEFINITION_INVALID' | 'DEFINITION_MISMATCH' = 'DEFINITION_INVALID') {
    super(code, message, { retryable: false });
  }
}

export type Dependency = 'Postgres' | 'RabbitMQ' | 'Kafka';

/**
 * A dependency cannot be reached or refuses the connection. Its message is the one line an operator
 * needs: which component, at which address (password masked), why, and the setting to fix
 * (`cannot connect to Postgres at postgres://app:***@db:5432/app: connection refused (ECONNREFUSED);
 * check DATABASE_URL`). Not a message's fault: retried without charging an attempt.
 */
export class DependencyError extends SagaflowError {
  constructor(
    readonly dependency: Dependency,
    readonly address: string,
    readonly setting: string | undefined,
    cause: unknown,
  ) {
    super('SYSTEMIC', `cannot connect to ${dependency} at ${address}: ${connectFailureText(cause)}${setting ? `; check ${setting}` : ''}`, {
      retryable: true,
      countsAsAttempt: false,
      cause,
    });
  }
}

const CONNECT_CODES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  ERR_INVALID_URL: 'not a valid URL',
};

/** Why a connection failed, in a few words: the innermost cause that has a code, else the innermost message. */
export function connectFailureText(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 5; depth++) {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && CONNECT_CODES[code]) return `${CONNECT_CODES[code]} (${code})`;
    const cause = (e as { cause?: unknown } | null)?.cause;
    if (cause === undefined || cause === null) break;
    e = cause;
  }
  return errorMessage(e).split('\n')[0]!.slice(0, 300);
}

/** Thrown for a bad command line, a bad config or a bad operator request: shown as-is, no stack. */
export class UsageError extends SagaflowError {
  constructor(message: string, code: ReasonCode = 'USAGE') {
    super(code, message, { retryable: false });
  }
}

/** The thing an operator named does not exist (CLI exit 3, HTTP 404). */
export class NotFoundError extends SagaflowError {
  constructor(message: string) {
    super('NOT_FOUND', message, { retryable: false });
  }
}

/** An operator action that the target's state does not allow (CLI exit 4, HTTP 409). */
export class RefusedError extends SagaflowError {
  constructor(code: ReasonCode, message: string) {
    super(code, message, { retryable: false });
  }
}

export interface ErrorClass {
  code: ReasonCode;
  retryable: boolean;
  countsAsAttempt: boolean;
  message: string;
}

/** SQLSTATE classes that mean "the database, not this message": connection, resources, shutdown. */
const SYSTEMIC_SQLSTATE = /^(08|53|57P0|58|40001|40P01|55P03|25P03|57014|XX)/;
const SYSTEMIC_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

export function isSystemicDbError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof DependencyError) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (SYSTEMIC_SQLSTATE.test(code) || SYSTEMIC_NODE_CODES.has(code))) return true;
  // node-postgres reports a lost connection with plain Errors and these messages.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(
    err.message,
  );
}

/** Classifies anything thrown by a handler into the three facts the transports act on. */
export function classifyError(err: unknown): ErrorClass {
  if (err instanceof SagaflowError) {
    return { code: err.code, retryable: err.retryable, countsAsAttempt: err.countsAsAttempt, message: err.message };
  }
  const message = err instanceof Error ? err.message : String(err);
  if (isSystemicDbError(err)) return { code: 'SYSTEMIC', retryable: true, countsAsAttempt: false, message };
  return { code: 'HANDLER_ERROR', retryable: true, countsAsAttempt: true, message };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
