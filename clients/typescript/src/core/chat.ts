// ChatSession: one chat session's messages, streams and tool calls (websocket-api.md
// "Chat Events", "Tool Events", "Agent Status Events").
//
// Streams: each chat_message_chunk is kept by its chunkIndex and the content is the
// chunks joined in index order, so chunks that arrive out of order (or twice) still
// read in order. A `catchUp` chunk (sent to a joiner mid-stream) carries the whole
// content so far: it replaces what we had. chat_message_complete's finalContent is the
// message's final text; a chunk arriving after it changes nothing.
import { Emitter } from "./emitter.js";
import type { EventOf, WebSocketManager } from "./manager.js";
import { newId } from "./util.js";
import type { ServerEventMap } from "../protocol.js";

export interface ChatMessage {
  id: string;
  kind: "message";
  role: string;
  content: string;
  /** chunkIndex -> text of a streamed reply. */
  chunks: Map<number, string>;
  streaming: boolean;
  /** Our own message, sent but not yet echoed by the server. */
  sending?: boolean;
  /** chat_message_complete arrived: content is final. */
  complete?: boolean;
}

export interface ToolCall {
  id: string;
  kind: "tool";
  name: string;
  progress: number;
  status: string;
  done: boolean;
  error?: string;
}

export interface ChatEvents {
  message: ChatMessage;
  tool: ToolCall;
  agent_status: unknown;
  [type: string]: unknown;
}

export interface ChatSessionOptions {
  manager: WebSocketManager;
  sessionId: string;
}

/** The fields of the tool events ChatSession reads (each event has some of them). */
interface ToolPayload {
  toolCallId: string;
  toolName?: string;
  progress?: number | null;
  status?: string | null;
  error?: string | null;
}

const TOOL_EVENTS = ["tool_call_start", "tool_call_progress", "tool_call_complete", "tool_call_error"] as const;
type ToolEvent = (typeof TOOL_EVENTS)[number];

export class ChatSession extends Emitter<ChatEvents> {
  manager: WebSocketManager;
  sessionId: string;
  messages = new Map<string, ChatMessage>();
  tools = new Map<string, ToolCall>();
  /** Messages and tool calls in the order they first appeared. */
  order: Array<ChatMessage | ToolCall> = [];
  agentStatus: unknown = null;
  private readonly _unsubscribe: Array<() => void> = [];

  constructor({ manager, sessionId }: ChatSessionOptions) {
    super();
    this.manager = manager;
    this.sessionId = sessionId;
    const on = <K extends keyof ServerEventMap & string>(
      type: K,
      handler: (p: ServerEventMap[K], event: EventOf<K>) => void,
    ): void => {
      this._unsubscribe.push(
        manager.on(type, (data) => {
          const event = data as EventOf<K>;
          if (!event.sessionId || event.sessionId === sessionId) handler((event.payload || {}) as ServerEventMap[K], event);
        }),
      );
    };
    on("chat_message", (p) => {
      const m = this._message(p.messageId || newId("msg"), p.role || "assistant");
      m.content = p.content || "";
      m.streaming = false;
      m.sending = false; // our own message's echo: the server stored it
      this.emit("message", m);
    });
    on("chat_message_chunk", (p) => {
      const m = this._message(p.messageId, "assistant");
      if (m.complete) return; // finalContent is final
      if (p.catchUp) m.chunks = new Map([[p.chunkIndex ?? 0, p.content || ""]]);
      else m.chunks.set(p.chunkIndex ?? m.chunks.size, p.content || "");
      m.content = [...m.chunks.entries()]
        .sort((a, b) => a[0] - b[0])
        .map((c) => c[1])
        .join("");
      m.streaming = !p.isComplete;
      this.emit("message", m);
    });
    on("chat_message_complete", (p) => {
      const m = this._message(p.messageId, "assistant");
      m.content = p.finalContent ?? m.content;
      m.streaming = false;
      m.complete = true;
      this.emit("message", m);
    });
    for (const type of TOOL_EVENTS) {
      on(type, (p) => this._tool(type, p));
    }
    on("agent_status_update", (p) => {
      this.agentStatus = p;
      this.emit("agent_status", p);
    });
  }

  /** Stop listening to the manager. */
  destroy(): void {
    for (const off of this._unsubscribe.splice(0)) off();
  }

  send(content: string): void {
    const messageId = newId("msg");
    const m = this._message(messageId, "user");
    m.content = content;
    m.sending = true;
    this.emit("message", m);
    this.manager.sendMessage("chat_message", { content, role: "user", messageId });
  }

  private _message(id: string, role: string): ChatMessage {
    let m = this.messages.get(id);
    if (!m) {
      m = { id, role, content: "", chunks: new Map(), streaming: true, kind: "message" };
      this.messages.set(id, m);
      this.order.push(m);
    }
    return m;
  }

  private _tool(type: ToolEvent, p: ToolPayload): void {
    let t = this.tools.get(p.toolCallId);
    if (!t) {
      t = { id: p.toolCallId, kind: "tool", name: p.toolName || "tool", progress: 0, status: "", done: false };
      this.tools.set(p.toolCallId, t);
      this.order.push(t);
    }
    if (type === "tool_call_start") t.status = "started";
    if (type === "tool_call_progress") {
      t.progress = p.progress ?? t.progress;
      t.status = p.status || t.status;
    }
    if (type === "tool_call_complete") {
      t.progress = 1;
      t.done = true;
      t.status = "done";
    }
    if (type === "tool_call_error") {
      t.done = true;
      t.error = p.error || "failed";
      t.status = `failed: ${t.error}`;
    }
    this.emit("tool", t);
  }
}
