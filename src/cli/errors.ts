import { SagaflowError } from '../errors.js';

/** A lookup that found nothing: exit code 3, so scripts can tell "absent" from "broken". */
export class NotFound extends SagaflowError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** Exit codes: 0 ok, 1 failure, 2 bad usage or input, 3 not found, 4 refused (wrong state). */
export function exitCodeFor(err: unknown): number {
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
      return 4;
    default:
      return 1;
  }
}
