import type { SagaflowModule } from '../../src/index.js';
import { PlaceOrder, SetPaymentOutage } from './messages.js';
import { migrateExample, orderParticipants } from './participants.js';
import { orderSaga } from './saga.js';

/**
 * The module `sagaflow worker --module examples/order` loads. Its own tables live in the schema
 * named by ORDER_EXAMPLE_SCHEMA (default order_example), so test runs can isolate themselves.
 */
export default function orderModule(ctx: { env: Readonly<Record<string, string | undefined>> }): SagaflowModule {
  const schema = ctx.env.ORDER_EXAMPLE_SCHEMA || 'order_example';
  return {
    sagas: [orderSaga],
    participants: orderParticipants(schema),
    messages: [PlaceOrder, SetPaymentOutage],
    migrate: (db) => migrateExample(db, schema),
  };
}

export { orderSaga } from './saga.js';
export * from './messages.js';
export { exampleTables, migrateExample, orderParticipants } from './participants.js';
