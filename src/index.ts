/**
 * sagaflow's public surface. Words used throughout (see README "Concepts"):
 * - command: a message asking one participant to do one thing (`ReserveStock`).
 * - event / reply: a message stating a fact (`StockReserved`); replies answer commands.
 * - envelope: id, type, saga id, correlation and causation ids, tenant, time, headers, payload.
 * - saga definition: the immutable description built with `defineSaga(...)...build()`.
 * - saga instance: one running saga: a `sagas` row plus one `saga_steps` row per step attempt.
 * - compensation: the command that undoes a completed step; run in reverse order.
 * - inbox / outbox: the tables that make consuming idempotent and publishing transactional.
 * - relay: the loop that publishes outbox rows a crash left behind.
 * - transport: the broker adapter (memory, RabbitMQ, Kafka) behind one small interface.
 * - dead letter: a message that can never succeed, kept with a reason code, never dropped.
 */
export { defineMessage, MessageRegistry, type MessageDefinition, type PayloadOf, type InputOf } from './messages/message.js';
export { type Envelope } from './messages/envelope.js';
export { encodeEnvelope, decodeEnvelope, decodeMessage, encodeMessage, type WireFormat } from './messages/wire.js';
export { defineSaga, type SagaDefinition, type StepFailure, type FailurePolicy, type LocalContext } from './saga/definition.js';
export { decide, sagaIdFor, type SagaInput, type Decision } from './saga/engine.js';
export type { SagaInstance, SagaStatus, EngineState } from './saga/state.js';
export type { StepRetry } from './saga/retry.js';
export { defineParticipant, reply, type ParticipantDefinition, type HandlerContext, type Reply } from './participant/definition.js';
export { createWorker, workerOptionsFrom, type Worker, type WorkerOptions, type Role, type SagaChange } from './worker/worker.js';
export type { SagaflowModule } from './module.js';
export { createClient, type SagaflowClient, type SendOptions } from './client.js';
export { createDb, type Db, type Queryable } from './db/db.js';
export { migrate, assertSchemaCurrent } from './db/migrate.js';
export { loadConfig, type Config } from './config.js';
export { createLogger, type Logger } from './log.js';
export { MemoryTransport } from './transport/memory.js';
export { createTransport } from './transport/create.js';
export type { Transport, Publisher, Subscriber, Delivery, OutgoingMessage, TransportFeatures } from './transport/contract.js';
export { SagaflowError, PermanentError, RetryableError, SystemicError, type ReasonCode } from './errors.js';
export { SagaStore } from './saga/store.js';
