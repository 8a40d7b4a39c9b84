import { describe, expect, it } from 'vitest';
import { classifyError, PermanentError, RetryableError, SystemicError } from '../../src/errors.js';
import { HOLD_MS, routeFailure, type FailureFacts, type FailureRoute } from '../../src/transport/failure-routing.js';

const policy = { maxAttempts: 3, delaysMs: [100, 1000, 5000] } as const;
const handlerError = classifyError(new Error('boom'));
const permanent = classifyError(new PermanentError('SCHEMA_INVALID', 'amount missing'));
const systemic = classifyError(new SystemicError('database down'));
const flaky = classifyError(new RetryableError('UNKNOWN_SAGA', 'saga not visible yet'));
const tooLarge = { code: 'MESSAGE_TOO_LARGE', message: 'record too large' };

const base = { policy, recorder: false, sink: true } as const;

/** [what, facts, expected route] */
const table: [string, FailureFacts, Partial<FailureRoute>][] = [
  ['a handler error on the first attempt is retried after the first delay', { ...base, error: handlerError, attempt: 1 }, { action: 'retry', attempt: 2, delayMs: 100 }],
  ['the second attempt waits the second delay', { ...base, error: handlerError, attempt: 2 }, { action: 'retry', attempt: 3, delayMs: 1000 }],
  ['past maxAttempts: dead letter MAX_ATTEMPTS_EXCEEDED naming the code', { ...base, error: handlerError, attempt: 3 }, { action: 'dead-letter', reason: 'MAX_ATTEMPTS_EXCEEDED', error: 'HANDLER_ERROR: boom' }],
  ['a permanent error is dead-lettered at once with its own code', { ...base, error: permanent, attempt: 1 }, { action: 'dead-letter', reason: 'SCHEMA_INVALID', error: 'amount missing' }],
  ['a systemic error does not use up an attempt', { ...base, error: systemic, attempt: 3 }, { action: 'retry', attempt: 3, delayMs: 5000 }],
  ['a retryable sagaflow error counts as an attempt', { ...base, error: flaky, attempt: 1 }, { action: 'retry', attempt: 2 }],
  ['the last delay repeats', { ...base, policy: { maxAttempts: 9, delaysMs: [10, 20] }, error: handlerError, attempt: 5 }, { action: 'retry', attempt: 6, delayMs: 20 }],
  ['the recorder is retried like anyone while attempts are left', { ...base, recorder: true, error: handlerError, attempt: 1 }, { action: 'retry', attempt: 2, delayMs: 100 }],
  ['the recorder out of attempts parks in its slowest tier, attempt unchanged', { ...base, recorder: true, error: handlerError, attempt: 3 }, { action: 'retry', attempt: 3, delayMs: 5000 }],
  ['the recorder never dead-letters into its own topic', { ...base, recorder: true, error: permanent, attempt: 1 }, { action: 'retry', attempt: 1, delayMs: 5000 }],
  [
    'a refused retry copy is recorded directly with the true reason',
    { ...base, error: handlerError, attempt: 1, refused: { copy: 'retry', ...tooLarge } },
    { action: 'record', reason: 'HANDLER_ERROR' },
  ],
  [
    'a refused dead-letter copy is recorded directly with its dead-letter reason',
    { ...base, error: permanent, attempt: 1, refused: { copy: 'dead-letter', ...tooLarge } },
    { action: 'record', reason: 'SCHEMA_INVALID' },
  ],
  [
    'an exhausted message whose copy is refused keeps MAX_ATTEMPTS_EXCEEDED',
    { ...base, error: handlerError, attempt: 3, refused: { copy: 'dead-letter', ...tooLarge } },
    { action: 'record', reason: 'MAX_ATTEMPTS_EXCEEDED' },
  ],
  ['without a sink a refused copy is held, never requeued hot', { ...base, sink: false, error: permanent, attempt: 1, refused: { copy: 'dead-letter', ...tooLarge } }, { action: 'hold', delayMs: HOLD_MS }],
  ['the recorder whose copy is refused holds', { ...base, recorder: true, error: handlerError, attempt: 1, refused: { copy: 'retry', ...tooLarge } }, { action: 'hold', delayMs: HOLD_MS }],
];

describe('routeFailure', () => {
  it.each(table)('%s', (_what, facts, expected) => {
    expect(routeFailure(facts)).toMatchObject(expected);
  });

  it('says in the recorded error why the broker copy was refused', () => {
    const r = routeFailure({ ...base, error: handlerError, attempt: 1, refused: { copy: 'retry', ...tooLarge } });
    expect(r.action === 'record' && r.error).toBe('boom (its retry copy was refused by the broker: MESSAGE_TOO_LARGE: record too large)');
  });

  it('never answers a hot loop: every retry or hold waits, unless the policy itself says 0 ms', () => {
    for (const [, facts] of table) {
      const r = routeFailure(facts);
      if (r.action === 'retry') expect(r.delayMs).toBeGreaterThan(0);
      if (r.action === 'hold') expect(r.delayMs).toBeGreaterThanOrEqual(1000);
    }
  });
});
