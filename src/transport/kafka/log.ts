import { logLevel, type logCreator } from 'kafkajs';
import type { Logger } from '../../log.js';

/**
 * kafkajs logs every reconnect, retry and rebalance, many of them at ERROR while it recovers by
 * itself. Its log creator is routed to the pino logger and capped at `warn`: what sagaflow itself
 * must act on (consumer crashes, publish failures) it logs on its own, with context. Info and debug
 * lines are not even produced (the client's `logLevel` is WARN unless `debug` is asked for).
 */
export function kafkaLogCreator(logger: Logger, gate: KafkaLogGate = { quiet: false }): logCreator {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ namespace, level, log: entry }) => {
      const { message, timestamp: _timestamp, ...extra } = entry;
      const fields = { kafkajs: namespace, ...extra };
      if (level <= logLevel.WARN && !gate.quiet) log.warn(fields, message);
      else log.debug(fields, message);
    };
}

/**
 * While `quiet`, kafkajs' warnings and errors go to debug. The transport sets it during its first
 * connect: with the broker down kafkajs logs every retry of every connection with a stack trace
 * (30+ lines in 10 s) before the connect fails, and the one line that matters is the transport's
 * own error naming the broker. LOG_LEVEL=debug still shows them.
 */
export interface KafkaLogGate {
  quiet: boolean;
}

/** WARN, unless the pino logger itself is at debug or trace (then kafkajs' INFO lines help). */
export function kafkaLogLevel(logger: Logger): logLevel {
  return logger.isLevelEnabled('debug') ? logLevel.INFO : logLevel.WARN;
}
