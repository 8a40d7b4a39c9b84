import { logLevel, type logCreator } from 'kafkajs';
import type { Logger } from '../../log.js';

/**
 * kafkajs logs every reconnect, retry and rebalance, many of them at ERROR while it recovers by
 * itself. Its log creator is routed to the pino logger and capped at `warn`: what sagaflow itself
 * must act on (consumer crashes, publish failures) it logs on its own, with context. Info and debug
 * lines are not even produced (the client's `logLevel` is WARN unless `debug` is asked for).
 */
export function kafkaLogCreator(logger: Logger): logCreator {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ namespace, level, log: entry }) => {
      const { message, timestamp: _timestamp, ...extra } = entry;
      const fields = { kafkajs: namespace, ...extra };
      if (level <= logLevel.WARN) log.warn(fields, message);
      else log.debug(fields, message);
    };
}

/** WARN, unless the pino logger itself is at debug or trace (then kafkajs' INFO lines help). */
export function kafkaLogLevel(logger: Logger): logLevel {
  return logger.isLevelEnabled('debug') ? logLevel.INFO : logLevel.WARN;
}
