/**
 * docs/wire-protocol.md and docs/schemas are what foreign clients are written from: the worked
 * example must be the bytes the code produces and must still decode, and the committed schemas
 * must be what `npm run schemas` generates from the zod schemas.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { orderSaga } from '../../examples/order/saga.js';
import * as order from '../../examples/order/messages.js';
import { STEP_HEADERS } from '../../src/saga/state.js';
import { HEADER_ATTRIBUTES } from '../../src/messages/cloudevents.js';
import { parsePayload } from '../../src/messages/envelope.js';
import { MessageRegistry } from '../../src/messages/message.js';
import { decodeMessage } from '../../src/messages/wire.js';
import { schemaFiles, workedExample } from '../../scripts/wire/generate.js';
import { schemaValidator } from '../helpers/json-schema.js';

const root = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(root, 'docs', 'wire-protocol.md'), 'utf8');

function example(name: string): string {
  const m = new RegExp(`<!-- example:${name} -->\\n\`\`\`json\\n(.*)\\n\`\`\``).exec(doc);
  if (!m) throw new Error(`docs/wire-protocol.md has no example:${name} block`);
  return m[1]!;
}

describe('docs/wire-protocol.md worked example', () => {
  let ex: Awaited<ReturnType<typeof workedExample>>;
  beforeAll(async () => {
    ex = await workedExample('cloudevents');
  });

  it('shows the exact bytes the orchestrator and the participant produce', () => {
    expect(example('command')).toBe(ex.command.body.toString('utf8'));
    expect(example('reply')).toBe(ex.reply.body.toString('utf8'));
    expect(doc).toContain(`body (${ex.command.body.length} bytes`);
    expect(doc).toContain(`body (${ex.reply.body.length} bytes`);
    expect(doc).toContain(ex.command.headers!['content-type']!);
    expect(doc).toContain(`record key\n\`${ex.sagaId}\``);
  });

  it('still decodes: the command as a stock command, the reply as an answer to it', () => {
    const cmd = decodeMessage(Buffer.from(example('command')), { 'content-type': 'application/cloudevents+json; charset=utf-8' }).envelope;
    expect(parsePayload(order.ReserveStock, cmd)).toEqual({ orderId: 'order-1001', items: [{ sku: 'sku-1', qty: 2 }], reject: false });
    const reply = decodeMessage(Buffer.from(example('reply'))).envelope;
    expect(new MessageRegistry(orderSaga.registry.all()).has(reply.type)).toBe(true);
    expect(reply.causationId).toBe(cmd.id);
    expect(reply.sagaId).toBe(cmd.sagaId);
    expect(reply.headers).toEqual(cmd.headers);
  });

  it('validates against the committed JSON Schemas', () => {
    expect(schemaValidator('cloudevent.schema.json')(JSON.parse(example('command')))).toEqual([]);
    expect(schemaValidator('messages/ReserveStock.schema.json')(JSON.parse(example('command')))).toEqual([]);
    expect(schemaValidator('messages/StockReserved.schema.json')(JSON.parse(example('reply')))).toEqual([]);
    expect(schemaValidator('messages/StockReserved.schema.json')(JSON.parse(example('command')))).not.toEqual([]);
  });

  it('documents every extension attribute the writer can emit', () => {
    for (const attr of Object.values(HEADER_ATTRIBUTES)) expect(doc).toContain(`\`${attr}\``);
    // The wire format spells the engine's step headers out (it sits below the engine): keep them equal.
    for (const h of Object.values(STEP_HEADERS)) expect(HEADER_ATTRIBUTES[h]).toBeDefined();
  });
});

describe('docs/schemas', () => {
  it('are what `npm run schemas` generates from the zod schemas', async () => {
    for (const [name, content] of await schemaFiles()) {
      expect(readFileSync(join(root, 'docs', 'schemas', name), 'utf8'), `docs/schemas/${name} is stale: run npm run schemas`).toBe(content);
    }
  });
});
