/**
 * (e) bad input (the bad-input rows of docs/fault-matrix.md) lands in dead_letters with its reason
 *     code while valid orders interleaved with it complete, also when a forged copy of an id shares a
 *     batch with the original;
 * (f) a participant handler that throws for one order of a batch: the rest of the batch commits,
 *     the bad one is retried and dead-lettered after retry.maxAttempts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StockReserved, orderParticipants, orderSaga } from '../../../examples/order/index.js';
import type { Envelope } from '../../../src/messages/envelope.js';
import { encodeEnvelope } from '../../../src/messages/wire.js';
import type { OutgoingMessage } from '../../../src/transport/contract.js';
import type { ParticipantDefinition } from '../../../src/participant/definition.js';
import { waitFor } from '../../helpers/wait.js';
import { RETRY, workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_bad');
const { startWorker, orders, startMessage, sagaRows, waitTerminal, steps, replyTo, effectsOf, shuffle } = suite;

describe('(e) bad input', () => {
  interface DeadLetterRow {
    message_id: string;
    consumer: string;
    topic: string;
    reason_code: string;
    error: string | null;
    attempts: number | null;
  }

  async function deadLetters(ids: readonly string[]): Promise<Map<string, DeadLetterRow>> {
    const { rows } = await suite.db.query<DeadLetterRow>(
      `SELECT message_id, consumer, topic, reason_code, error, attempts FROM "${suite.t.schema}".dead_letters WHERE message_id = ANY($1)`,
      [ids],
    );
    return new Map(rows.map((r) => [r.message_id, r]));
  }

  function raw(body: Buffer | string, over: Partial<OutgoingMessage> = {}): OutgoingMessage {
    return { topic: orderSaga.topic, key: 'k', id: randomUUID(), type: 'PlaceOrder', body: Buffer.isBuffer(body) ? body : Buffer.from(body), ...over };
  }

  function envelope(over: Record<string, unknown> = {}, drop: string[] = []): Record<string, unknown> {
    const e: Record<string, unknown> = {
      id: randomUUID(),
      type: 'PlaceOrder',
      schemaVersion: 1,
      tenantId: 'default',
      correlationId: 'bad-input',
      occurredAt: new Date().toISOString(),
      payload: { orderId: 'o-bad', customerId: 'c', items: [{ sku: 'sku-1', qty: 1 }], amountCents: 100 },
      ...over,
    };
    for (const k of drop) delete e[k];
    return e;
  }

  const json = (v: unknown) => JSON.stringify(v);
  function withoutCausation(m: OutgoingMessage): OutgoingMessage {
    const e = JSON.parse(m.body.toString()) as Record<string, unknown>;
    delete e.causationid;
    delete e.causationId;
    return { ...m, body: Buffer.from(json(e)) };
  }

  it('each bad message ends in dead_letters with its reason code; valid orders interleaved with them complete', async () => {
    const w = await startWorker();
    const cases: { label: string; message: OutgoingMessage; reason: string }[] = [
      { label: '1 not UTF-8', message: raw(Buffer.from([0xff, 0xfe, 0xfd, 0x00])), reason: 'DECODE_ERROR' },
      { label: '2 malformed JSON', message: raw('{"id": "x", '), reason: 'MALFORMED_JSON' },
      { label: '3 array', message: raw('[]'), reason: 'INVALID_ENVELOPE' },
      { label: '3 null', message: raw('null'), reason: 'INVALID_ENVELOPE' },
      { label: '3 number', message: raw('42'), reason: 'INVALID_ENVELOPE' },
      { label: '3 string', message: raw('"x"'), reason: 'INVALID_ENVELOPE' },
      ...['id', 'type', 'schemaVersion', 'tenantId', 'correlationId'].map((k) => ({
        label: `4 no ${k}`,
        message: raw(json(envelope({}, [k]))),
        reason: 'INVALID_ENVELOPE',
      })),
      { label: '5 wrong type', message: raw(json(envelope({ payload: { orderId: 'o', customerId: 'c', items: [{ sku: 's', qty: 1 }], amountCents: 'lots' } }))), reason: 'SCHEMA_INVALID' },
      { label: '5 missing field', message: raw(json(envelope({ payload: { orderId: 'o', items: [{ sku: 's', qty: 1 }], amountCents: 1 } }))), reason: 'SCHEMA_INVALID' },
      { label: '5 out of range', message: raw(json(envelope({ payload: { orderId: 'o', customerId: 'c', items: [{ sku: 's', qty: -1 }], amountCents: 1 } }))), reason: 'SCHEMA_INVALID' },
      { label: '6 unknown type', message: raw(json(envelope({ type: 'DropAllTables' }))), reason: 'UNKNOWN_TYPE' },
      { label: '7 major version 2', message: raw(json(envelope({ schemaVersion: 2 }))), reason: 'UNSUPPORTED_VERSION' },
      { label: '9 oversized', message: raw(json(envelope({ payload: { blob: 'x'.repeat(300 * 1024) } }))), reason: 'PAYLOAD_TOO_LARGE' },
      { label: '20 content type', message: raw(json(envelope()), { headers: { 'content-type': 'application/xml' } }), reason: 'UNSUPPORTED_CONTENT_TYPE' },
      { label: 'empty body', message: raw(Buffer.alloc(0)), reason: 'EMPTY_VALUE' },
      // NUL characters end up in the error text; Postgres text cannot store them.
      { label: '2 a NUL body', message: raw('\u0000'), reason: 'MALFORMED_JSON' },
      { label: '6 a type with a NUL', message: raw(json(envelope({ type: 'Drop\u0000Tables' }))), reason: 'UNSTORABLE_TEXT' },
      // A NUL inside a payload string can never be stored (Postgres text/jsonb): at once, not after five handler errors.
      {
        label: 'a NUL in a payload string',
        message: raw(json(envelope({ payload: { orderId: 'o-nul', customerId: 'c\u0000', items: [{ sku: 'sku-1', qty: 1 }], amountCents: 100 } }))),
        reason: 'UNSTORABLE_TEXT',
      },
      {
        label: '14 reply for an unknown saga',
        message: raw(
          json(
            envelope({
              type: 'StockReserved',
              sagaId: randomUUID(),
              causationId: randomUUID(),
              payload: { orderId: 'o-ghost', reservationId: 'r' },
            }),
          ),
          { type: 'StockReserved' },
        ),
        reason: 'UNKNOWN_SAGA',
      },
    ];

    // Valid orders, among them an SQL-looking order id (row 23) and prototype-pollution keys (row 11).
    const runId = randomUUID().slice(0, 8);
    const sqlOrderId = `${runId}'); DROP TABLE sagas; --`;
    const valid = orders(6).map((o, i) => (i === 0 ? { ...o, orderId: sqlOrderId } : o));
    const protoOrder = valid[1]!;
    const validStarts = valid.map((o) => startMessage(o));
    {
      // The __proto__ / constructor keys must be in the raw JSON text (an object literal would not
      // carry them through JSON.stringify), at the payload's top level and inside an item.
      const env = JSON.parse(validStarts[1]!.message.body.toString()) as Envelope;
      const item = protoOrder.items[0]!;
      const payloadText =
        `{"orderId":${json(protoOrder.orderId)},"customerId":${json(protoOrder.customerId)},` +
        `"items":[{"sku":${json(item.sku)},"qty":${item.qty},"__proto__":{"polluted":"item"}}],` +
        `"amountCents":${protoOrder.amountCents},"failAt":"none",` +
        `"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}`;
      const text = json({ ...env, payload: null }).replace('"payload":null', `"payload":${payloadText}`);
      expect(text).toContain('"__proto__":{"polluted":"yes"}');
      validStarts[1] = { ...validStarts[1]!, message: { ...validStarts[1]!.message, body: Buffer.from(text) } };
    }

    // Row 11 at the envelope level: unknown envelope keys are ignored (a tolerant reader), so these
    // are valid starts whose pollution keys go nowhere.
    const [pa, pb] = orders(2).map((o) => startMessage(o));
    const tolerated = [
      { ...pa!, message: { ...pa!.message, body: Buffer.from(pa!.message.body.toString().replace(/^\{/, '{"__proto__":{"polluted":"env"},')) } },
      { ...pb!, message: { ...pb!.message, body: Buffer.from(json({ ...JSON.parse(pb!.message.body.toString()), constructor: { prototype: { polluted: 'env' } } })) } },
    ];
    expect(tolerated[0]!.message.body.toString()).toContain('"__proto__":{"polluted":"env"}');
    validStarts.push(...tolerated);

    await w.transport.publisher.publish(shuffle([...cases.map((c) => c.message), ...validStarts.map((s) => s.message)]));
    const rows = await waitTerminal(validStarts.map((s) => s.sagaId));
    expect(rows.map((r) => r.status)).toEqual(Array(validStarts.length).fill('completed'));

    // Second wave, needs the first processed: an id reused with another body (row 13), a reply
    // from another tenant (row 17), and more valid orders interleaved. (Row 16, stale and
    // out-of-order replies, is ignored rather than dead-lettered: see (g).)
    const sqlSagaId = validStarts[0]!.sagaId;
    const sqlSteps = await steps(sqlSagaId);
    const conflict = { ...validStarts[2]!.message, body: Buffer.from(validStarts[2]!.message.body.toString().replace(/"amountCents":\d+/, '"amountCents":1')) };
    const otherTenant = replyTo(sqlSagaId, sqlSteps[0]!, StockReserved, { orderId: sqlOrderId, reservationId: 'r' }, { tenantId: 'tenant-b' });
    // Replies that name no command of their saga: dead letters with their own reason, not ignored.
    const noCausation = withoutCausation(replyTo(sqlSagaId, sqlSteps[0]!, StockReserved, { orderId: sqlOrderId, reservationId: 'r' }));
    const foreignCausation = replyTo(sqlSagaId, { ...sqlSteps[0]!, command_id: randomUUID() }, StockReserved, { orderId: sqlOrderId, reservationId: 'r' });
    const second = [
      { label: '13 id reused with another body', message: conflict, reason: 'ID_CONFLICT' },
      { label: '17 other tenant', message: otherTenant, reason: 'TENANT_MISMATCH' },
      { label: 'reply without causation id', message: noCausation, reason: 'UNMATCHED_REPLY' },
      { label: 'reply answering no command of the saga', message: foreignCausation, reason: 'UNMATCHED_REPLY' },
    ];
    const more = orders(3).map((o) => startMessage(o));
    await w.transport.publisher.publish(shuffle([...second.map((c) => c.message), ...more.map((s) => s.message)]));
    const moreRows = await waitTerminal(more.map((s) => s.sagaId));
    expect(moreRows.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);

    const all = [...cases, ...second];
    const dl = await waitFor(
      `${all.length} dead letters`,
      () => deadLetters(all.map((c) => c.message.id)),
      (m) => m.size === all.length,
      { timeoutMs: 15_000 },
    );
    for (const c of all) {
      const row = dl.get(c.message.id)!;
      expect(row, c.label).toBeDefined();
      expect(row.consumer, c.label).toBe('orchestrator.order');
      expect(row.topic, c.label).toBe('orders');
      if (c.reason === 'UNKNOWN_SAGA') {
        // Retried (the reply may beat its saga's commit), then dead-lettered. By the transport
        // contract (src/transport/contract.ts) a retryable failure that ran out of attempts is filed
        // as MAX_ATTEMPTS_EXCEEDED, with the cause's code first in the error text.
        expect(row.attempts, c.label).toBe(RETRY.maxAttempts);
        expect(row.reason_code, c.label).toBe('MAX_ATTEMPTS_EXCEEDED');
        expect(row.error, c.label).toMatch(/^UNKNOWN_SAGA: /);
      } else {
        expect(row.reason_code, c.label).toBe(c.reason);
        expect(row.attempts, c.label).toBe(1);
      }
    }
    // Rejected messages leave no inbox claim behind, so a redrive after a fix can process them.
    const inbox = await suite.db.query(`SELECT message_id FROM "${suite.t.schema}".inbox WHERE message_id = ANY($1::uuid[])`, [[otherTenant.id]]);
    expect(inbox.rows).toEqual([]);

    // Row 23: the SQL-looking id round-trips verbatim and did nothing else.
    const sqlSaga = rows.find((r) => r.id === sqlSagaId)!;
    expect(sqlSaga.data.orderId).toBe(sqlOrderId);
    expect((await effectsOf([sqlOrderId])).get(sqlOrderId)).toEqual(['reserve', 'charge', 'ship']);
    const tables = await suite.db.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`"${suite.t.schema}".sagas`]);
    expect(tables.rows[0]!.t).not.toBeNull();
    // Row 11: the pollution keys were stripped, not stored and not applied.
    const protoSaga = rows.find((r) => r.id === validStarts[1]!.sagaId)!;
    const stored = await suite.db.query<{ data: string; state: string }>(`SELECT data::text, state::text FROM "${suite.t.schema}".sagas WHERE id = $1`, [protoSaga.id]);
    expect(stored.rows[0]!.data).not.toMatch(/__proto__|polluted|constructor/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    // The tenant-mismatched reply changed nothing.
    expect((await sagaRows([sqlSagaId]))[0]!.version).toBe(sqlSaga.version);
    // The conflicting message did not replace the original saga.
    expect((await sagaRows([validStarts[2]!.sagaId]))[0]!.data).toMatchObject({ orderId: valid[2]!.orderId, amountCents: valid[2]!.amountCents });
    expect(w.worker.stats().deadLettersRecorded).toBe(all.length);
  });
});

describe('(e) bad input: row 13 inside one batch', () => {
  it('the same id with another body in the same batch is an ID_CONFLICT, not a silently acked duplicate', async () => {
    const w = await startWorker();
    // At the orchestrator: a start message and a forgery with its id, published together (one batch).
    const [o] = orders(1);
    const s = startMessage(o!);
    const forged: OutgoingMessage = { ...s.message, body: Buffer.from(s.message.body.toString().replace(/"amountCents":\d+/, '"amountCents":1')) };
    // At a participant: one command id, two bodies, in one batch. No replyTo: the reply is dropped.
    const chargeId = randomUUID();
    const charge = (amountCents: number): OutgoingMessage => {
      const env: Envelope = {
        id: chargeId,
        type: 'ChargePayment',
        schemaVersion: 1,
        tenantId: 'default',
        correlationId: `direct-${chargeId}`,
        occurredAt: new Date().toISOString(),
        payload: { orderId: `direct-${chargeId.slice(0, 8)}`, customerId: 'c', amountCents, decline: false },
      };
      return { topic: 'payment', key: chargeId, id: chargeId, type: 'ChargePayment', body: encodeEnvelope(env) };
    };
    await w.transport.publisher.publish([s.message, forged, charge(100), charge(1)]);

    const [saga] = await waitTerminal([s.sagaId]);
    expect(saga).toMatchObject({ status: 'completed', data: { amountCents: o!.amountCents } });
    const dl = await waitFor(
      'both forgeries to be dead-lettered',
      async () =>
        (
          await suite.db.query<{ consumer: string; message_id: string; reason_code: string }>(
            `SELECT consumer, message_id, reason_code FROM "${suite.t.schema}".dead_letters WHERE message_id = ANY($1) ORDER BY consumer`,
            [[s.message.id, chargeId]],
          )
        ).rows,
      (rows) => rows.length === 2,
      { timeoutMs: 10_000 },
    );
    expect(dl).toEqual([
      { consumer: 'orchestrator.order', message_id: s.message.id, reason_code: 'ID_CONFLICT' },
      { consumer: 'participant.payment', message_id: chargeId, reason_code: 'ID_CONFLICT' },
    ]);
    const charged = await effectsOf([`direct-${chargeId.slice(0, 8)}`]);
    expect(charged.get(`direct-${chargeId.slice(0, 8)}`)).toEqual(['charge']);
  });
});

describe('(f) a participant handler that throws for one order of a batch', () => {
  it('the others in the batch commit; the bad one is retried and dead-lettered after retry.maxAttempts', async () => {
    const list = orders(12);
    const bad = list[5]!;
    const calls = new Map<string, number>();
    // The example's payment participant, with a handler that crashes on one order.
    const participants = orderParticipants(suite.exampleSchema).map((p): ParticipantDefinition => {
      if (p.name !== 'payment') return p;
      const handlers = new Map(p.handlers);
      const charge = handlers.get('ChargePayment')!;
      handlers.set('ChargePayment', {
        message: charge.message,
        handle: (ctx) => {
          for (const item of ctx.items) {
            const orderId = (item.payload as { orderId: string }).orderId;
            calls.set(orderId, (calls.get(orderId) ?? 0) + 1);
            if (orderId === bad.orderId) throw new Error('payment handler crashed');
          }
          return charge.handle(ctx);
        },
      });
      return { ...p, handlers };
    });
    const w = await startWorker({ module: { sagas: [orderSaga], participants } });
    const starts = list.map((o) => startMessage(o));
    await w.transport.publisher.publish(starts.map((s) => s.message));
    const goodIds = starts.filter((_, i) => i !== 5).map((s) => s.sagaId);
    const rows = await waitTerminal(goodIds);
    expect(rows.map((r) => r.status)).toEqual(Array(11).fill('completed'));

    const dl = await waitFor(
      'the crashing command to be dead-lettered',
      async () =>
        (
          await suite.db.query<{ reason_code: string; error: string; attempts: number; msg_type: string }>(
            `SELECT reason_code, error, attempts, msg_type FROM "${suite.t.schema}".dead_letters WHERE consumer = 'participant.payment' AND msg_key = $1`,
            [starts[5]!.sagaId],
          )
        ).rows,
      (r) => r.length === 1,
      { timeoutMs: 10_000 },
    );
    expect(dl[0]).toMatchObject({ reason_code: 'MAX_ATTEMPTS_EXCEEDED', attempts: RETRY.maxAttempts, msg_type: 'ChargePayment' });
    expect(dl[0]!.error).toMatch(/^HANDLER_ERROR: payment handler crashed/);
    // The crash was inside a batch with other orders; the batch was split and the others committed.
    const isolated = w.log.lines.filter((l) => l.msg === 'batch failed; isolating its messages one by one');
    expect(isolated.length).toBeGreaterThanOrEqual(1);
    expect(Math.max(...isolated.map((l) => Number(l.size)))).toBeGreaterThan(1);
    // Every delivery of the bad command ran the handler (the first one twice: in the batch, then alone).
    expect(calls.get(bad.orderId)).toBeGreaterThanOrEqual(RETRY.maxAttempts);
    for (const o of list) if (o !== bad) expect(calls.get(o.orderId), o.orderId).toBeGreaterThanOrEqual(1);

    const effects = await effectsOf(list.map((o) => o.orderId));
    for (const o of list) expect(effects.get(o.orderId), o.orderId).toEqual(o === bad ? ['reserve'] : ['reserve', 'charge', 'ship']);
    // The bad order's saga still waits for its payment (its step timeout decides what happens next).
    const badSaga = (await sagaRows([starts[5]!.sagaId]))[0]!;
    expect(badSaga).toMatchObject({ status: 'running', version: 2 });
  });
});

