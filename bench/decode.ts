/**
 * Decode cost per message, before and after CloudEvents: `npx tsx bench/decode.ts [n]`.
 * Every variant does what a consumer does before any database work: bytes -> checked envelope ->
 * payload validated by its zod schema -> inbox digest.
 *   0.1 legacy       the previous release's path (strict envelope, digest over the raw bytes)
 *   legacy           this release reading a legacy body (tolerant envelope, canonical ids, NUL check, meaning digest)
 *   ce structured    this release reading what it writes by default
 *   ce binary        this release reading a Kafka binary-mode event (ce_ headers, data in the body)
 * The message is the worked example's ReserveStock command (docs/wire-protocol.md).
 */
import { ReserveStock } from '../examples/order/messages.js';
import { digest16 } from '../src/ids.js';
import { toCloudEvent } from '../src/messages/cloudevents.js';
import { parsePayload } from '../src/messages/envelope.js';
import { MessageRegistry } from '../src/messages/message.js';
import { decodeMessage } from '../src/messages/wire.js';
import { decodeDelivery } from '../src/transaction/decode.js';
import type { Delivery } from '../src/transport/contract.js';
import { v01Decode } from '../test/fixtures/legacy-reader-v0.1.js';
import { workedExample } from '../scripts/wire/generate.js';

const n = Number(process.argv[2] ?? 200_000);
const registry = new MessageRegistry([ReserveStock]);
const structured = (await workedExample('cloudevents')).command;
const legacy = (await workedExample('legacy')).command;
const env = decodeMessage(structured.body, structured.headers).envelope;
const { data, ...attrs } = toCloudEvent(env);
const binaryHeaders = { ...Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`ce_${k}`, String(v)])), 'content-type': 'application/json' };
const delivery = (body: Buffer, headers: Record<string, string>): Delivery => ({ topic: 'stock', key: undefined, id: undefined, type: undefined, body, headers, attempt: 1, redelivered: false });

const variants: [string, () => unknown][] = [
  [
    '0.1 legacy',
    () => {
      const e = v01Decode(legacy.body, 'application/json');
      return [parsePayload(ReserveStock, e as never), digest16(legacy.body)];
    },
  ],
  ['legacy', () => decodeDelivery(delivery(legacy.body, { ...legacy.headers }), registry, 256 * 1024)],
  ['ce structured', () => decodeDelivery(delivery(structured.body, { ...structured.headers }), registry, 256 * 1024)],
  ['ce binary', () => decodeDelivery(delivery(Buffer.from(JSON.stringify(data)), binaryHeaders), registry, 256 * 1024)],
];

for (let round = 0; round < 2; round++) {
  for (const [name, fn] of variants) {
    for (let i = 0; i < 2000; i++) fn(); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    const ns = Number(process.hrtime.bigint() - t0) / n;
    if (round === 1) console.log(`${name.padEnd(14)} ${ns.toFixed(0).padStart(6)} ns/message  (${n} messages)`);
  }
}
console.log(`bodies: legacy ${legacy.body.length} B, structured ${structured.body.length} B, binary data ${Buffer.byteLength(JSON.stringify(data))} B`);
