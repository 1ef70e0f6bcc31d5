// PerformanceMonitor: websocket-api.md "Performance Monitoring - WebSocket" (the class it
// shows, there WebSocketPerformanceMonitor) and "Client Metrics"
// (`client.getPerformanceMetrics()`), counted from a manager's events.
//
// - messagesSent / bytesSent: every message the manager wrote ("send"), heartbeat echoes
//   included, the authentication frame and token refreshes not (they hold a token).
// - messagesReceived: server events (a batch counts each of its events);
//   bytesReceived: the frames as read ("frame").
// - latency: per server heartbeat, now minus its serverTime (the spec's measure: one
//   way, so it includes the clock offset between server and client; the server measures
//   the round trip itself from our echoes, see sync/health.py). The last
//   LATENCY_SAMPLES are kept.
// - reconnections: connections opened after the first; errors: `error` and
//   `connection_error` events, refused tokens.
// - connectionDuration: how long the current connection has been open (0 when not).
import type { WebSocketManager } from "./manager.js";

export const LATENCY_SAMPLES = 100;
/** messagesPerSecond above this (over the connection's life) is "high frequency". */
export const HIGH_FREQUENCY_MESSAGES_PER_S = 10;

export interface PerformanceCounters {
  messagesSent: number;
  messagesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** ms the last (re)connection took, from connecting to authenticated. */
  connectionTime: number;
  reconnections: number;
  errors: number;
}

export interface PerformanceMetrics extends PerformanceCounters {
  /** ms since the monitor started (or was reset). */
  uptime: number;
  averageLatency: number;
  maxLatency: number;
  lastLatency: number | null;
  /** ISO time of the last server heartbeat, null before the first. */
  lastHeartbeat: string | null;
  messagesPerSecond: number;
  averageMessageSize: number;
  /** 1 minus reconnections per minute of uptime (the spec's formula), at least 0. */
  connectionStability: number;
  errorRate: number;
  connectionDuration: number;
  queuedMessages: number;
  isHighFrequency: boolean;
}

function zero(): PerformanceCounters {
  return {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    connectionTime: 0,
    reconnections: 0,
    errors: 0,
  };
}

export class PerformanceMonitor {
  readonly wsManager: WebSocketManager;
  private metrics: PerformanceCounters = zero();
  private latencyHistory: number[] = [];
  private startTime = Date.now();
  private lastHeartbeat: string | null = null;
  private connectingSince: number | null = null;
  private openSince: number | null = null;
  private opened = 0;

  constructor(wsManager: WebSocketManager) {
    this.wsManager = wsManager;
    this.setupMonitoring();
  }

  private setupMonitoring(): void {
    const m = this.wsManager;
    m.on("message", (message) => {
      this.metrics.messagesReceived++;
      if (message.type === "connection_heartbeat") {
        const serverTime = (message.payload as { serverTime?: unknown } | undefined)?.serverTime;
        const at = typeof serverTime === "string" ? Date.parse(serverTime) : NaN;
        if (Number.isFinite(at)) {
          this.lastHeartbeat = serverTime as string;
          this.latencyHistory.push(Math.max(0, Date.now() - at));
          if (this.latencyHistory.length > LATENCY_SAMPLES) this.latencyHistory.shift();
        }
      } else if (message.type === "error" || message.type === "connection_error") {
        this.metrics.errors++;
      }
    });
    m.on("frame", ({ bytes }) => {
      this.metrics.bytesReceived += bytes;
    });
    m.on("send", (message) => {
      this.metrics.messagesSent++;
      this.metrics.bytesSent += JSON.stringify(message).length;
    });
    m.on("state", (state) => {
      if (state === "connecting" && this.connectingSince === null) this.connectingSince = Date.now();
      if (state !== "open") this.openSince = null;
    });
    m.on("open", () => {
      const now = Date.now();
      if (this.connectingSince !== null) this.metrics.connectionTime = now - this.connectingSince;
      this.connectingSince = null;
      this.openSince = now;
      if (this.opened++ > 0) this.metrics.reconnections++;
    });
    m.on("resumed", () => {
      this.connectingSince = null;
      this.openSince ??= Date.now();
    });
    m.on("auth_failed", () => {
      this.metrics.errors++;
    });
  }

  getMetrics(): PerformanceMetrics {
    const now = Date.now();
    const uptime = now - this.startTime;
    const latencies = this.latencyHistory;
    const averageLatency = latencies.length > 0 ? latencies.reduce((a, b) => a + b, 0) / latencies.length : 0;
    const { messagesSent, bytesSent, reconnections, errors } = this.metrics;
    const connectionDuration = this.openSince !== null && this.wsManager.isOpen ? now - this.openSince : 0;
    const messagesPerSecond = uptime > 0 ? messagesSent / (uptime / 1000) : 0;
    return {
      ...this.metrics,
      uptime,
      averageLatency,
      maxLatency: latencies.length > 0 ? Math.max(...latencies) : 0,
      lastLatency: latencies.length > 0 ? (latencies[latencies.length - 1] ?? null) : null,
      lastHeartbeat: this.lastHeartbeat,
      messagesPerSecond,
      averageMessageSize: messagesSent > 0 ? bytesSent / messagesSent : 0,
      connectionStability: uptime > 0 ? Math.max(0, 1 - reconnections / (uptime / 60000)) : 1,
      errorRate: messagesSent > 0 ? errors / messagesSent : 0,
      connectionDuration,
      queuedMessages: this.wsManager.messageQueue.length,
      isHighFrequency: messagesPerSecond > HIGH_FREQUENCY_MESSAGES_PER_S,
    };
  }

  reset(): void {
    this.metrics = zero();
    this.latencyHistory = [];
    this.startTime = Date.now();
  }
}

/** The spec's name for the class. */
export { PerformanceMonitor as WebSocketPerformanceMonitor };
