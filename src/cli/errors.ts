import { RefusedError, SagaflowError } from '../errors.js';

/** Exit codes: 0 ok, 1 failure, 2 bad usage or input, 3 not found, 4 refused (wrong state). */
export function exitCodeFor(err: unknown): number {
  if (err instanceof RefusedError) return 4;
  if (!(err instanceof SagaflowError)) return 1;
  switch (err.code) {
    case 'USAGE':
    case 'CONFIG_INVALID':
    case 'SCHEMA_INVALID':
    case 'DEFINITION_INVALID':
      return 2;
    case 'NOT_FOUND':
      return 3;
    case 'INVALID_STATE':
    case 'NEEDS_FORCE':
      return 4;
    default:
      return 1;
  }
}
