/**
 * The wire formats: CloudEvents 1.0 structured and binary mode (Kafka `ce_` headers, AMQP
 * `cloudEvents_` / `cloudEvents:` application properties), the legacy envelope, canonical ids,
 * NUL detection, the meaning digest, and old/new interoperation.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkedCloudEvent, cloudEventSchema, toCloudEvent } from '../../src/messages/cloudevents.js';
import { canonicalJson, meaningDigest, type Envelope } from '../../src/messages/envelope.js';
import { decodeMessage, encodeMessage } from '../../src/messages/wire.js';
import { v01Decode, v01Encode } from '../fixtures/legacy-reader-v0.1.js';
import { seededRandom } from '../helpers/seed.js';
import { codeOf } from '../helpers/reason-code.js';

const base: Envelope = {
  id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  type: 'ReserveStock',
  schemaVersion: 1,
  tenantId: 'acme',
  correlationId: 'order-1',
  causationId: '0b9e6679-7425-40de-944b-e07fc1f90ae7',
  sagaId: '1c9e6679-7425-40de-944b-e07fc1f90ae7',
  replyTo: 'orders',
  source: '/sagaflow/sagas/order',
  occurredAt: '2026-12-01T12:00:00.000Z',
  headers: { 'sagaflow-step': 'reserveStock', 'sagaflow-phase': 'forward', 'sagaflow-attempt': '1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
  payload: { orderId: 'order-1', items: [{ sku: 'a', qty: 1 }] },
};


const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('CloudEvents structured mode', () => {
  it('round-trips every envelope field; traceparent and step headers become extension attributes', () => {
    const { body, headers } = encodeMessage(base, 'cloudevents');
    expect(headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
    const ce = JSON.parse(body.toString()) as Record<string, unknown>;
    expect(ce).toMatchObject({ specversion: '1.0', id: base.id, source: base.source, type: base.type, time: base.occurredAt, datacontenttype: 'application/json' });
    expect(ce).toMatchObject({ sagaid: base.sagaId, causationid: base.causationId, tenantid: 'acme', correlationid: 'order-1', replyto: 'orders', schemaversion: 1 });
    expect(ce).toMatchObject({ step: 'reserveStock', phase: 'forward', attempt: '1', traceparent: base.headers!.traceparent });
    const back = decodeMessage(body, headers);
    expect(back.mode).toBe('structured');
    expect(back.envelope).toEqual(base);
  });

  it('writes only documented attributes: a header without one is refused', () => {
    expect(codeOf(() => encodeMessage({ ...base, headers: { 'x-custom': '1' } }, 'cloudevents'))).toBe('INVALID_ENVELOPE');
  });

  it('tolerates unknown attributes and unknown legacy fields (a producer one version ahead)', () => {
    const ce = { ...toCloudEvent(base), newattr: 'x', futureext: { nested: true } };
    expect(decodeMessage(json(ce)).envelope.id).toBe(base.id);
    const legacy = JSON.parse(encodeMessage(base, 'legacy').body.toString()) as Record<string, unknown>;
    expect(decodeMessage(json({ ...legacy, source: 'x', somethingNew: 1 })).envelope.id).toBe(base.id);
  });

  it('is recognised by its content type or by a specversion member', () => {
    const body = encodeMessage(base, 'cloudevents').body;
    expect(decodeMessage(body, { 'content-type': 'application/json' }).mode).toBe('structured');
    expect(decodeMessage(body).mode).toBe('structured');
  });

  it('refuses what it cannot read with reason codes', () => {
    const ce = toCloudEvent(base);
    expect(codeOf(() => decodeMessage(json({ ...ce, specversion: '0.3' })))).toBe('INVALID_ENVELOPE');
    expect(codeOf(() => decodeMessage(json({ ...ce, datacontenttype: 'application/xml' })))).toBe('UNSUPPORTED_CONTENT_TYPE');
    const { data: _d, ...noData } = ce;
    expect(codeOf(() => decodeMessage(json({ ...noData, data_base64: 'AAAA' })))).toBe('UNSUPPORTED_CONTENT_TYPE');
    expect(codeOf(() => decodeMessage(json({ ...ce, id: 'abc' })))).toBe('INVALID_ENVELOPE');
    expect(codeOf(() => decodeMessage(json({ ...ce, source: '' })))).toBe('INVALID_ENVELOPE');
    expect(codeOf(() => decodeMessage(json(ce), { 'content-type': 'text/plain' }))).toBe('UNSUPPORTED_CONTENT_TYPE');
  });

  it('fills documented defaults for a minimal foreign event', () => {
    const id = randomUUID();
    const env = decodeMessage(json({ specversion: '1.0', id, source: '/kcat', type: 'PlaceOrder', data: { a: 1 } })).envelope;
    expect(env).toMatchObject({ id, schemaVersion: 1, tenantId: 'default', correlationId: id, source: '/kcat', payload: { a: 1 } });
  });
});

describe('CloudEvents binary mode', () => {
  const data = Buffer.from(JSON.stringify(base.payload));
  const attrs = (prefix: string): Record<string, string> => ({
    [`${prefix}specversion`]: '1.0',
    [`${prefix}id`]: base.id,
    [`${prefix}source`]: '/foreign',
    [`${prefix}type`]: base.type,
    [`${prefix}time`]: base.occurredAt,
    [`${prefix}schemaversion`]: '1',
    [`${prefix}tenantid`]: 'acme',
    [`${prefix}correlationid`]: 'order-1',
    [`${prefix}causationid`]: base.causationId!,
    [`${prefix}sagaid`]: base.sagaId!,
    [`${prefix}step`]: 'reserveStock',
    [`${prefix}traceparent`]: base.headers!.traceparent!,
  });

  it.each([['Kafka ce_', 'ce_'], ['AMQP cloudEvents_', 'cloudEvents_'], ['AMQP cloudEvents:', 'cloudEvents:']])('%s headers, data in the body', (_what, prefix) => {
    const out = decodeMessage(data, { ...attrs(prefix), 'content-type': 'application/json', 'x-sagaflow-id': base.id });
    expect(out.mode).toBe('binary');
    expect(out.envelope).toMatchObject({ id: base.id, type: base.type, sagaId: base.sagaId, causationId: base.causationId, tenantId: 'acme', source: '/foreign', payload: base.payload });
    expect(out.envelope.headers).toEqual({ 'sagaflow-step': 'reserveStock', traceparent: base.headers!.traceparent });
  });

  it('refuses non-JSON data and NUL in a header', () => {
    expect(codeOf(() => decodeMessage(data, { ...attrs('ce_'), 'content-type': 'application/octet-stream' }))).toBe('UNSUPPORTED_CONTENT_TYPE');
    expect(codeOf(() => decodeMessage(data, { ...attrs('ce_'), ce_step: 'a\u0000b' }))).toBe('UNSTORABLE_TEXT');
  });
});

describe('canonical ids', () => {
  it('upper-case and mixed-case UUIDs decode to lower case in every format', () => {
    const upper = { ...base, id: base.id.toUpperCase(), sagaId: base.sagaId!.toUpperCase(), causationId: base.causationId!.toUpperCase() };
    for (const format of ['cloudevents', 'legacy'] as const) {
      const env = decodeMessage(encodeMessage(upper, format).body).envelope;
      expect([env.id, env.sagaId, env.causationId]).toEqual([base.id, base.sagaId, base.causationId]);
    }
  });

  it('a causation id that is not a UUID keeps its spelling', () => {
    const env = decodeMessage(encodeMessage({ ...base, causationId: 'Saga-X:v3' }, 'cloudevents').body).envelope;
    expect(env.causationId).toBe('Saga-X:v3');
  });
});

describe('NUL characters (Postgres text cannot store U+0000)', () => {
  it.each([
    ['in a payload string', { ...base, payload: { orderId: 'a\u0000b' } }],
    ['in a nested array', { ...base, payload: { items: [{ sku: 'x' }, { sku: '\u0000' }] } }],
    ['in a payload key', { ...base, payload: { ['k\u0000']: 1 } }],
    ['in the type', { ...base, type: 'A\u0000' }],
  ])('%s is UNSTORABLE_TEXT at once', (_what, env) => {
    for (const format of ['cloudevents', 'legacy'] as const) expect(codeOf(() => decodeMessage(encodeMessage(env, format).body))).toBe('UNSTORABLE_TEXT');
  });

  it('an escaped backslash followed by u0000 is not a NUL', () => {
    expect(decodeMessage(encodeMessage({ ...base, payload: { s: '\\u0000' } }, 'cloudevents').body).envelope.payload).toEqual({ s: '\\u0000' });
  });
});

describe('the meaning digest', () => {
  const { seed } = seededRandom('meaning digest');
  const reorder = (v: unknown, flip: boolean): unknown => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return Array.isArray(v) ? v.map((x) => reorder(x, flip)) : v;
    const keys = Object.keys(v).sort();
    if (flip) keys.reverse();
    return Object.fromEntries(keys.map((k) => [k, reorder((v as Record<string, unknown>)[k], flip)]));
  };

  it('is the same for any key order, time, source, wire format and id spelling; differs for another meaning', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 3 })), fc.boolean(), (payload, flip) => {
        const a: Envelope = { ...base, payload };
        const b: Envelope = { ...base, id: base.id.toUpperCase(), payload: reorder(payload, flip), occurredAt: '2027-01-01T00:00:00Z', source: '/other' };
        const decodedA = decodeMessage(encodeMessage(a, 'cloudevents').body).envelope;
        const decodedB = decodeMessage(encodeMessage(b, 'legacy').body).envelope;
        expect(meaningDigest(decodedB).equals(meaningDigest(decodedA))).toBe(true);
        const other = decodeMessage(encodeMessage({ ...a, payload: { ...payload, ['extra-key']: 1 } }, 'cloudevents').body).envelope;
        expect(meaningDigest(other).equals(meaningDigest(decodedA))).toBe(false);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('canonical JSON sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: [2, 1], a: { d: 1, c: null } })).toBe('{"a":{"c":null,"d":1},"b":[2,1]}');
  });

  it('canonical JSON is byte for byte what the first implementation wrote (stored inbox digests depend on it)', () => {
    const reference = (v: unknown): string => {
      if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
      if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : reference(x))).join(',')}]`;
      const parts: string[] = [];
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined) parts.push(`${JSON.stringify(k)}:${reference(x)}`);
      }
      return `{${parts.join(',')}}`;
    };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }),
      { seed, numRuns: 500 },
    );
  });
});

describe('the hand-written CloudEvent check', () => {
  const { random } = seededRandom('CloudEvent hand check');
  const written = toCloudEvent(base);
  const edge: unknown[] = [
    undefined, null, '', 'x', 1, 0, -1, 1.5, 1000, 1001, '1', '0', '1000', '1001', '01', '1234567890', ' 1', true, [], {}, 'a'.repeat(128), 'a'.repeat(129),
    'a'.repeat(200), 'a'.repeat(201), 'a'.repeat(1024), 'a'.repeat(1025), 'a'.repeat(4096), 'a'.repeat(4097), base.id, base.id.toUpperCase(),
    '00000000-0000-0000-0000-000000000000', '7c9e6679-7425-00de-944b-e07fc1f90ae7', '7c9e6679-7425-40de-744b-e07fc1f90ae7', `${base.id} `,
    '2026-12-01T12:00:00.000Z', '2026-12-01T12:00:00Z', '2026-12-01T12:00:00+02:00', '2026-02-29T12:00:00Z', '2028-02-29T12:00:00Z', '2026-12-01 12:00:00Z',
    '2026-12-01T24:00:00Z', '2026-12-01T12:00:00', '123456789012', '1234567890123', '1.0', '1.1', 'application/json', 'text/plain',
  ];
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

  it('accepts what sagaflow writes, without zod', () => {
    expect(checkedCloudEvent(JSON.parse(JSON.stringify(written)))).toEqual(cloudEventSchema.parse(JSON.parse(JSON.stringify(written))));
    expect(checkedCloudEvent({ ...written, schemaversion: '1', deadlinems: '5000', extra: 1 })).toEqual(cloudEventSchema.parse({ ...written, schemaversion: '1', deadlinems: '5000', extra: 1 }));
  });

  it('accepts only what the schema accepts, and then returns what the schema returns', () => {
    const attrs = [...Object.keys(cloudEventSchema.shape), 'unknownattr'];
    let fast = 0;
    for (let i = 0; i < 20_000; i++) {
      const raw: Record<string, unknown> = { ...written };
      for (let k = 1 + Math.floor(random() * 3); k > 0; k--) raw[pick(attrs)] = pick(edge);
      const hand = checkedCloudEvent(raw);
      const zod = cloudEventSchema.safeParse(raw);
      if (hand === undefined) continue;
      fast++;
      expect(zod.success, JSON.stringify(raw)).toBe(true);
      expect(hand).toEqual(zod.data);
    }
    expect(fast).toBeGreaterThan(1000);
  });
});

describe('old and new interoperate', () => {
  it('an 0.1 producer -> this release reads it', () => {
    const { causationId: _c, replyTo: _r, source: _s, ...rest } = base;
    const old = v01Encode({ ...rest, headers: { 'sagaflow-step': 'reserveStock' } });
    const { envelope, mode } = decodeMessage(old, { 'content-type': 'application/json' });
    expect(mode).toBe('legacy');
    expect(envelope).toMatchObject({ id: base.id, type: base.type, sagaId: base.sagaId, payload: base.payload, headers: { 'sagaflow-step': 'reserveStock' } });
  });

  it('this release with SAGAFLOW_WIRE_FORMAT=legacy -> an 0.1 reader reads it; with cloudevents it cannot (hence the setting)', () => {
    const legacy = encodeMessage(base, 'legacy');
    const read = v01Decode(legacy.body, legacy.headers['content-type']);
    expect(read).toMatchObject({ id: base.id, sagaId: base.sagaId, causationId: base.causationId, headers: base.headers, payload: base.payload });
    const ce = encodeMessage(base, 'cloudevents');
    expect(() => v01Decode(ce.body, ce.headers['content-type'])).toThrow(/UNSUPPORTED_CONTENT_TYPE/);
  });
});
