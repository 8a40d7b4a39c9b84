import { hash } from 'node:crypto';

/**
 * Name-based UUIDs (RFC 9562 version 5: SHA-1 over namespace + name). Written here rather than
 * taken from the `uuid` package because ids are derived on the hot path (every command, reply and
 * event) and that implementation re-parses the namespace and re-encodes the name on every call;
 * this one is about twice as fast and gives the same ids (test/unit/ids.test.ts).
 */
const HEX = Array.from({ length: 256 }, (_, i) => (i + 0x100).toString(16).slice(1));

export function uuidNamespace(ns: string): Buffer {
  const bytes = Buffer.from(ns.replace(/-/g, ''), 'hex');
  if (bytes.length !== 16) throw new Error(`not a UUID: ${ns}`);
  return bytes;
}

export function uuidV5(name: string, namespace: Buffer): string {
  // One buffer and the one-shot hash(): no Hash object per id (ids are derived several times per message).
  const buf = Buffer.allocUnsafe(namespace.length + Buffer.byteLength(name, 'utf8'));
  namespace.copy(buf, 0);
  buf.write(name, namespace.length, 'utf8');
  const h = hash('sha1', buf, 'buffer');
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  return (
    HEX[h[0]!]! + HEX[h[1]!]! + HEX[h[2]!]! + HEX[h[3]!]! + '-' + HEX[h[4]!]! + HEX[h[5]!]! + '-' + HEX[h[6]!]! + HEX[h[7]!]! + '-' +
    HEX[h[8]!]! + HEX[h[9]!]! + '-' + HEX[h[10]!]! + HEX[h[11]!]! + HEX[h[12]!]! + HEX[h[13]!]! + HEX[h[14]!]! + HEX[h[15]!]!
  );
}

/** First 16 bytes of SHA-256 (one-shot hash(): no Hash object per message). */
export function digest16(data: Buffer | Uint8Array): Buffer {
  return hash('sha256', data, 'buffer').subarray(0, 16);
}

/** Namespace of every id sagaflow derives (uuid v5): fixed forever, because the ids depend on it. */
export const DERIVED_ID_NAMESPACE = '6f1c3b9e-2d4a-5e8f-9b0c-7a1d2e3f4a5b';
const DERIVED = uuidNamespace(DERIVED_ID_NAMESPACE);

/** A stable id for `name`: re-running a rolled-back transition derives the same command, reply and event ids. */
export function derivedId(name: string): string {
  return uuidV5(name, DERIVED);
}
