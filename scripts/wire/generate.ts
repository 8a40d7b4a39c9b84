import { z } from 'zod';
import * as order from '../../examples/order/messages.js';
import { orderSaga } from '../../examples/order/saga.js';
import type { Queryable } from '../../src/db/db.js';
import { silentLogger } from '../../src/log.js';
import { cloudEventSchema } from '../../src/messages/cloudevents.js';
import { legacyEnvelopeSchema } from '../../src/messages/envelope.js';
import type { MessageDefinition } from '../../src/messages/message.js';
import type { WireFormat } from '../../src/messages/wire.js';
import { sagaIdFor } from '../../src/saga/engine.js';
import { buildReply } from '../../src/transaction/participant-work.js';
import { TransitionBatch, transitionSettings } from '../../src/transaction/transitions.js';
import type { OutgoingMessage } from '../../src/transport/contract.js';
import { decodeMessage } from '../../src/messages/wire.js';

/**
 * What `npm run schemas` writes under docs/schemas, and the worked example of
 * docs/wire-protocol.md: all produced by the code that encodes real messages, so they cannot drift
 * (test/unit/wire-protocol-doc.test.ts regenerates and compares).
 */
const SCHEMA_ID = 'urn:sagaflow:schemas:';
/** The example's clock: real messages carry the time they were written. */
export const EXAMPLE_TIME = '2026-12-01T12:00:00.000Z';
export const EXAMPLE_START_ID = '3f1b6c2e-8d4a-4c1e-9b7f-2a5d0e6c9b11';

function jsonSchema(schema: z.ZodType, id: string, title: string): Record<string, unknown> {
  const js = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
  return { $id: `${SCHEMA_ID}${id}`, title, ...js };
}

/** A structured-mode event whose `type` and `data` are those of one message definition. */
function eventSchemaFor(def: MessageDefinition): z.ZodType {
  return cloudEventSchema.extend({ type: z.literal(def.type), data: def.schema });
}

export const EXAMPLE_MESSAGES: readonly MessageDefinition[] = (Object.values(order) as unknown[])
  .filter((v): v is MessageDefinition => typeof v === 'object' && v !== null && 'schema' in v && 'type' in v)
  .sort((a, b) => a.type.localeCompare(b.type));

/** file name (under docs/schemas) -> content, pretty-printed with a final newline. */
export async function schemaFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const put = (name: string, v: unknown) => files.set(name, `${JSON.stringify(v, null, 2)}\n`);
  put('cloudevent.schema.json', jsonSchema(cloudEventSchema, 'cloudevent.schema.json', 'sagaflow message, CloudEvents 1.0 structured mode (JSON event format)'));
  put('legacy-envelope.schema.json', jsonSchema(legacyEnvelopeSchema, 'legacy-envelope.schema.json', 'sagaflow message, legacy envelope (read for one release)'));
  for (const def of EXAMPLE_MESSAGES) {
    put(`messages/${def.type}.schema.json`, jsonSchema(eventSchemaFor(def), `messages/${def.type}.schema.json`, `${def.type} (order example) as a structured CloudEvent`));
  }
  const ex = await workedExample('cloudevents');
  put('examples/ReserveStock.command.json', JSON.parse(ex.command.body.toString('utf8')));
  put('examples/StockReserved.reply.json', JSON.parse(ex.reply.body.toString('utf8')));
  return files;
}

const fixTime = (m: OutgoingMessage): OutgoingMessage => ({
  ...m,
  body: Buffer.from(m.body.toString('utf8').replace(/"(time|occurredAt)":"[^"]+"/, `"$1":"${EXAMPLE_TIME}"`), 'utf8'),
});

/**
 * The order saga's first command (ReserveStock, sent by the orchestrator when PlaceOrder arrives)
 * and the stock participant's reply, as the worker encodes them; only the clock is fixed.
 */
export async function workedExample(format: WireFormat): Promise<{ command: OutgoingMessage; reply: OutgoingMessage; sagaId: string }> {
  const sagaId = sagaIdFor(EXAMPLE_START_ID);
  const tr = new TransitionBatch(transitionSettings({ events: 'none', random: () => 0.5, wireFormat: format }), new Map());
  const noTx = {} as Queryable; // the order saga's first step is a remote command: no local step runs
  await tr.apply(
    noTx,
    orderSaga,
    sagaId,
    {
      kind: 'start',
      sagaId,
      messageId: EXAMPLE_START_ID,
      tenantId: 'acme',
      correlationId: 'order-1001',
      payload: order.PlaceOrder.schema.parse({
        orderId: 'order-1001',
        customerId: 'cust-7',
        items: [{ sku: 'sku-1', qty: 2 }],
        amountCents: 2599,
      }),
    },
    { messageId: EXAMPLE_START_ID },
  );
  const command = fixTime(tr.messages.find((m) => m.type === 'ReserveStock')!);
  const env = decodeMessage(command.body, command.headers).envelope;
  const r = buildReply('stock', env, { message: order.StockReserved, payload: { orderId: 'order-1001', reservationId: 'res-42' } }, format, silentLogger())!;
  return { command, reply: fixTime(r), sagaId };
}
