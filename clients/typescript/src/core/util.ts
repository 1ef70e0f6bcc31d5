// Small shared pieces of the client: the page's status labels, the close codes that end
// a connection for good, ids and a JWT's claims (for display only).

/** What the page shows of a trip's sync (TripSync.status). */
export const STATUS = Object.freeze({
  SYNCED: "Synced",
  SYNCING: "Syncing",
  OFFLINE: "Offline",
  CONFLICT: "Conflict", // a conflict dialog is open, or our edit awaits its resolution
  NOT_SAVED: "Not saved", // an edit of ours was rolled back or rejected
} as const);

export type Status = (typeof STATUS)[keyof typeof STATUS];

/** websocket-api.md "Connection Close Codes": these are not retried. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1008, 1009, 3000]);

/** `kind-<uuid>` (crypto.randomUUID where there is one). */
export function newId(kind: string): string {
  const random = globalThis.crypto?.randomUUID
    ? globalThis.crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `${kind}-${random}`;
}

/** A JWT's claims as far as a page reads them. */
export interface TokenClaims {
  sub?: string;
  exp?: number;
  iat?: number;
  name?: string;
  avatarUrl?: string;
  role?: string;
  [claim: string]: unknown;
}

/** Decode a JWT's claims for display (the server verifies it; we never trust it). */
export function tokenClaims(token: string): TokenClaims | null {
  try {
    const part = (token.split(".")[1] ?? "").replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json) as TokenClaims | null;
  } catch {
    return null;
  }
}
