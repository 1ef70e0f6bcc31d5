// STUB: replaced by the file generated from the server's pydantic models (AsyncAPI).
// Only the names the core types its handlers through, as loosely as possible.
/* eslint-disable @typescript-eslint/no-explicit-any */

/** Server event type -> payload. */
export type ServerEventMap = Record<string, any>;
export type ServerEventType = keyof ServerEventMap & string;
/** The envelope of every server event. */
export interface ServerEvent {
  id: string;
  type: ServerEventType;
  timestamp: string;
  sessionId?: string;
  userId?: string;
  payload: any;
}
/** Client message type -> the whole message. */
export type ClientMessageMap = Record<string, any>;
export type ClientMessageType = keyof ClientMessageMap & string;
