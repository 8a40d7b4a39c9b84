/**
 * Names that end up in database rows, broker topology and other services' code are API: saga
 * types, step names, consumer names, message types and topics. Renaming one strands in-flight
 * sagas or orphans a queue, so this test fails on any change; update it only together with a
 * migration plan (a new saga version, a queue move).
 */
import { describe, expect, it } from 'vitest';
import orderModule from '../../examples/order/index.js';
import { DEAD_LETTER_CONSUMER, DEAD_LETTER_TOPIC, H } from '../../src/transport/contract.js';
import { DERIVED_ID_NAMESPACE } from '../../src/ids.js';
import { STEP_HEADERS } from '../../src/saga/state.js';

describe('persisted names', () => {
  it('the order example keeps its saga, step, consumer, message and topic names', () => {
    const mod = orderModule({ env: {} });
    const names = {
      sagas: mod.sagas!.map((s) => ({ name: s.name, version: s.version, topic: s.topic, consumer: s.consumer, steps: s.steps.map((x) => x.name) })),
      participants: mod.participants!.map((p) => ({ name: p.name, consumer: p.consumer, topics: p.topics, commands: [...p.handlers.keys()] })),
    };
    expect(names).toMatchInlineSnapshot(`
      {
        "participants": [
          {
            "commands": [
              "ReserveStock",
              "ReleaseStock",
            ],
            "consumer": "participant.stock",
            "name": "stock",
            "topics": [
              "stock",
            ],
          },
          {
            "commands": [
              "ChargePayment",
              "RefundPayment",
              "SetPaymentOutage",
            ],
            "consumer": "participant.payment",
            "name": "payment",
            "topics": [
              "payment",
            ],
          },
          {
            "commands": [
              "ShipOrder",
            ],
            "consumer": "participant.shipping",
            "name": "shipping",
            "topics": [
              "shipping",
            ],
          },
        ],
        "sagas": [
          {
            "consumer": "orchestrator.order",
            "name": "order",
            "steps": [
              "reserveStock",
              "chargePayment",
              "shipOrder",
            ],
            "topic": "orders",
            "version": 1,
          },
        ],
      }
    `);
  });

  it('the wire-level constants never change (ids are derived from the namespace)', () => {
    expect({ DEAD_LETTER_TOPIC, DEAD_LETTER_CONSUMER, DERIVED_ID_NAMESPACE, H, STEP_HEADERS }).toMatchInlineSnapshot(`
      {
        "DEAD_LETTER_CONSUMER": "sagaflow.dead-letter-recorder",
        "DEAD_LETTER_TOPIC": "sagaflow.dead-letters",
        "DERIVED_ID_NAMESPACE": "6f1c3b9e-2d4a-5e8f-9b0c-7a1d2e3f4a5b",
        "H": {
          "attempt": "x-sagaflow-attempt",
          "consumer": "x-sagaflow-consumer",
          "deadLetteredAt": "x-sagaflow-dead-lettered-at",
          "error": "x-sagaflow-error",
          "firstSeenAt": "x-sagaflow-first-seen-at",
          "key": "x-sagaflow-key",
          "messageId": "x-sagaflow-id",
          "originalTopic": "x-sagaflow-original-topic",
          "reason": "x-sagaflow-reason",
          "type": "x-sagaflow-type",
        },
        "STEP_HEADERS": {
          "attempt": "sagaflow-attempt",
          "phase": "sagaflow-phase",
          "sagaType": "sagaflow-saga-type",
          "seq": "sagaflow-seq",
          "step": "sagaflow-step",
        },
      }
    `);
  });
});
