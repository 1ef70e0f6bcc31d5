// The framework-free core of @tripsage/sync-client: connection, offline queue, trip
// sync with optimistic updates, chat streams, metrics. React, Vue and Yjs bindings are
// the subpath exports ./react, ./vue, ./yjs (not part of this entry, nor of the web
// page's bundle: scripts/bundle-web.mjs).
export { Emitter } from "./core/emitter.js";
export {
  WebSocketManager,
  type AuthFailure,
  type AuthSuccess,
  type CloseInfo,
  type ConnectionState,
  type EventOf,
  type ManagerEvents,
  type ManagerOptions,
  type OutgoingMessage,
  type PayloadOf,
  type SocketLike,
  type WebSocketConstructor,
} from "./core/manager.js";
export {
  HIGH_FREQUENCY_MESSAGES_PER_S,
  LATENCY_SAMPLES,
  PerformanceMonitor,
  WebSocketPerformanceMonitor,
  type PerformanceCounters,
  type PerformanceMetrics,
} from "./core/metrics.js";
export { UpdateQueue, type QueueEntry } from "./core/queue.js";
export {
  IndexedDBStorage,
  MemoryStorage,
  defaultStorage,
  openStorage,
  type IndexedDBOptions,
  type StorageAdapter,
  type StorageKind,
} from "./core/storage.js";
export {
  TripSync,
  rebaseValue,
  type Collaborator,
  type FieldsChange,
  type Outcome,
  type OutcomeKind,
  type OutcomePayload,
  type TripEvents,
  type TripSyncOptions,
  type Unsaved,
} from "./core/trip.js";
export { ChatSession, type ChatEvents, type ChatMessage, type ChatSessionOptions, type ToolCall } from "./core/chat.js";
export { FINAL_CLOSE_CODES, STATUS, newId, tokenClaims, type Status, type TokenClaims } from "./core/util.js";
export type {
  ClientMessageMap,
  ClientMessageType,
  ServerEvent,
  ServerEventMap,
  ServerEventType,
} from "./protocol.js";

export const VERSION = "0.1.0";
