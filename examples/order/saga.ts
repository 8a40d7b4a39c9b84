import { defineSaga } from '../../src/index.js';
import {
  ChargePayment,
  OrderShipped,
  PaymentCharged,
  PaymentDeclined,
  PaymentRefunded,
  PaymentUnavailable,
  PlaceOrder,
  RefundPayment,
  ReleaseStock,
  ReserveStock,
  ShipOrder,
  ShippingFailed,
  StockRejected,
  StockReleased,
  StockReserved,
} from './messages.js';

/**
 * Reserve stock, charge the payment, ship. A refusal by any participant undoes what was done, in
 * reverse order (refund, then release). A payment OUTAGE is different from a refusal: the order
 * is not the customer's fault, so after the retries the saga stops as `failed` and an operator
 * replays it once the payment service is back (see the README walkthrough).
 */
export interface OrderSagaOptions {
  /** What a payment outage does once its retries are used: stop as failed (default) or compensate. */
  readonly onOutage?: 'fail' | 'compensate';
}

export function orderSagaWith(opts: OrderSagaOptions = {}) {
  const onOutage = opts.onOutage ?? 'fail';
  return defineSaga({
  name: 'order',
  version: 1,
  start: PlaceOrder,
  data: (o) => ({ orderId: o.orderId, customerId: o.customerId, items: o.items, amountCents: o.amountCents, failAt: o.failAt }),
})
  .step('reserveStock', {
    command: ReserveStock,
    payload: (d) => ({ orderId: d.orderId, items: d.items, reject: d.failAt === 'stock' }),
    success: [StockReserved],
    failure: [StockRejected],
    keep: (r) => ({ reservationId: r.reservationId }),
    compensate: {
      command: ReleaseStock,
      payload: (d, kept) => ({ orderId: d.orderId, reservationId: kept.reservationId }),
      success: [StockReleased],
      timeoutMs: 30_000,
    },
    timeoutMs: 30_000,
  })
  .step('chargePayment', {
    command: ChargePayment,
    payload: (d) => ({ orderId: d.orderId, customerId: d.customerId, amountCents: d.amountCents, decline: d.failAt === 'payment' }),
    success: [PaymentCharged],
    failure: [PaymentDeclined, PaymentUnavailable],
    // An outage is worth retrying; a decline is final.
    retryFailures: (r) => r.reason.startsWith('unavailable'),
    // ...and an outage is the participant's failure, not the customer's: it trips the breaker.
    technicalFailures: (r) => r.reason.startsWith('unavailable'),
    onFailure: (f) => (f.replyType === 'PaymentDeclined' ? 'compensate' : onOutage),
    keep: (r) => ({ paymentId: r.paymentId }),
    compensate: {
      command: RefundPayment,
      payload: (d, kept) => ({ orderId: d.orderId, paymentId: kept.paymentId }),
      success: [PaymentRefunded],
      timeoutMs: 30_000,
    },
    timeoutMs: 30_000,
    retry: { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 1000 },
  })
  .step('shipOrder', {
    command: ShipOrder,
    payload: (d) => ({ orderId: d.orderId, items: d.items, fail: d.failAt === 'shipping' }),
    success: [OrderShipped],
    failure: [ShippingFailed],
    timeoutMs: 30_000,
  })
  .build();
}

export const orderSaga = orderSagaWith();
