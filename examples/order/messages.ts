import { z } from 'zod';
import { defineMessage } from '../../src/index.js';

/**
 * The order saga's messages. Money is integer cents (never a float); every string and array has a
 * bound, so a hostile payload is refused by the schema instead of filling memory.
 */
const orderId = z.string().min(1).max(64);
const items = z
  .array(z.object({ sku: z.string().min(1).max(64), qty: z.number().int().positive().max(1000) }))
  .min(1)
  .max(50);

export const FAIL_AT = ['none', 'stock', 'payment', 'shipping'] as const;

export const PlaceOrder = defineMessage({
  type: 'PlaceOrder',
  topic: 'orders',
  schema: z.object({
    orderId,
    customerId: z.string().min(1).max(64),
    items,
    amountCents: z.number().int().nonnegative().max(1_000_000_000),
    /** Deterministic failure injection for demos and tests: which participant refuses this order. */
    failAt: z.enum(FAIL_AT).default('none'),
  }),
});

export const ReserveStock = defineMessage({ type: 'ReserveStock', topic: 'stock', schema: z.object({ orderId, items, reject: z.boolean() }) });
export const StockReserved = defineMessage({ type: 'StockReserved', schema: z.object({ orderId, reservationId: z.string() }) });
export const StockRejected = defineMessage({ type: 'StockRejected', schema: z.object({ orderId, reason: z.string().max(500) }) });
export const ReleaseStock = defineMessage({ type: 'ReleaseStock', topic: 'stock', schema: z.object({ orderId, reservationId: z.string() }) });
export const StockReleased = defineMessage({ type: 'StockReleased', schema: z.object({ orderId }) });

export const ChargePayment = defineMessage({
  type: 'ChargePayment',
  topic: 'payment',
  schema: z.object({ orderId, customerId: z.string().max(64), amountCents: z.number().int().nonnegative(), decline: z.boolean() }),
});
export const PaymentCharged = defineMessage({ type: 'PaymentCharged', schema: z.object({ orderId, paymentId: z.string() }) });
export const PaymentDeclined = defineMessage({ type: 'PaymentDeclined', schema: z.object({ orderId, reason: z.string().max(500) }) });
/** The payment service is down (the demo's outage switch): not the customer's fault, worth a later replay. */
export const PaymentUnavailable = defineMessage({ type: 'PaymentUnavailable', schema: z.object({ orderId, reason: z.string().max(500) }) });
export const RefundPayment = defineMessage({ type: 'RefundPayment', topic: 'payment', schema: z.object({ orderId, paymentId: z.string() }) });
export const PaymentRefunded = defineMessage({ type: 'PaymentRefunded', schema: z.object({ orderId }) });

export const ShipOrder = defineMessage({ type: 'ShipOrder', topic: 'shipping', schema: z.object({ orderId, items, fail: z.boolean() }) });
export const OrderShipped = defineMessage({ type: 'OrderShipped', schema: z.object({ orderId, trackingNumber: z.string() }) });
export const ShippingFailed = defineMessage({ type: 'ShippingFailed', schema: z.object({ orderId, reason: z.string().max(500) }) });

/** Operator switch for the replay walkthrough: takes the payment service down or back up. */
export const SetPaymentOutage = defineMessage({ type: 'SetPaymentOutage', topic: 'payment', schema: z.object({ down: z.boolean() }) });
export const PaymentOutageSet = defineMessage({ type: 'PaymentOutageSet', schema: z.object({ down: z.boolean() }) });
