import { connect as netConnect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { Kafka, logLevel, type ISocketFactory } from 'kafkajs';

export interface WaitForKafkaOptions {
  /** Deadline. Default 60 000 ms. */
  timeoutMs?: number;
  /** Checked between attempts: return a reason (e.g. "the JVM exited") to fail early. */
  abortReason?: () => string | undefined;
  /**
   * Ports to rewrite when connecting, `{ advertisedPort: listenerPort }`. When the broker advertises a
   * proxy's port, the probe must not depend on the proxy (which may not run yet): it connects to the
   * broker's own listener instead of the advertised address.
   */
  portMap?: Record<number, number>;
}

/**
 * Poll until a Kafka broker at `brokers` answers a metadata request (kafkajs admin connect +
 * describeCluster with at least one broker) and its group coordinator is available.
 */
export async function waitForKafkaReady(brokers: string, options: WaitForKafkaOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const portMap = options.portMap ?? {};
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt yet';
  const socketFactory: ISocketFactory = ({ host, port, onConnect }) => {
    const socket = netConnect({ host, port: portMap[port] ?? port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    return socket;
  };
  for (let wait = 50; ; wait = Math.min(Math.round(wait * 1.5), 500)) {
    const reason = options.abortReason?.();
    if (reason) throw new Error(reason);
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const kafka = new Kafka({
      clientId: 'sagaflow-kafka-ready-probe',
      brokers: brokers.split(','),
      logLevel: logLevel.NOTHING,
      connectionTimeout: Math.max(100, Math.min(2_000, remaining)),
      requestTimeout: Math.max(100, Math.min(5_000, remaining)),
      retry: { retries: 0 },
      socketFactory,
    });
    const admin = kafka.admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) {
        lastError = 'describeCluster returned no brokers';
      } else {
        // Also wait for the group coordinator: the first FindCoordinator creates __consumer_offsets and
        // its partitions must then load. Without this, the first consumer group of a test run sees
        // "The group coordinator is not available" / "coordinator is loading" and restarts itself.
        await admin.describeGroups(['sagaflow-kafka-ready-probe']);
        return;
      }
    } catch (err) {
      lastError = (err as Error).message;
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await delay(Math.min(wait, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`Kafka at ${brokers} not ready after ${timeoutMs} ms (last error: ${lastError})`);
}
