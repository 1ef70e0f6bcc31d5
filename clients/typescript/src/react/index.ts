// @tripsage/sync-client/react: hooks over the core client (websocket-api.md "Client
// Integration / React Integration"). react is a peer dependency; the core never imports it.
export { useWebSocket, type OutgoingMessage, type UseWebSocketOptions, type UseWebSocketResult } from "./websocket.js";
export {
  useTripCollaboration,
  type ConflictChoice,
  type EditBase,
  type TripCollaboration,
  type UseTripCollaborationOptions,
} from "./trip.js";
export {
  CollaborationPresence,
  useCollaborationPresence,
  type CollaborationPresenceProps,
  type PresenceState,
} from "./presence.js";
export { TripSageProvider, useTripSageOptions, type TripSageProviderProps } from "./provider.js";
export type { ConnectionError, ConnectionSnapshot, ConnectionState, ServerMessage } from "../view/connection.js";
export type { Collaborator, FieldLock, OptimisticUpdate, PendingConflict, TripSnapshot, UpdateStatus } from "../view/trip.js";
