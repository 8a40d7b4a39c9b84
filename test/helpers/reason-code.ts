import { expect } from 'vitest';
import { PermanentError } from '../../src/errors.js';

/** The reason code `fn` throws with (it must be a PermanentError), or undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(PermanentError);
    return (err as PermanentError).code;
  }
}
