// TripSage Sync trip planner page: sign-in, trip list, trip editor, chat panel.
//
// The protocol lives in client.js; this module only renders state and turns
// user input into TripSync.edit(). Every value from the server or another
// user is rendered with textContent (never innerHTML).
import {
  ChatSession,
  STATUS,
  TripSync,
  WebSocketManager,
  newId,
  tokenClaims,
} from "/static/client.js";

const TOKEN_KEY = "tripsage.token";
const COMMIT_DELAY_MS = 400;
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key === "type" || key === "title" || key === "href") {
      node.setAttribute(key, value);
    } else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function show(id) {
  for (const section of ["sign-in", "trip-list", "editor"]) {
    document.getElementById(section).hidden = section !== id;
  }
}

// -- identity -----------------------------------------------------------------

function currentToken() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = tokenClaims(token);
  if (!claims || typeof claims.sub !== "string") return null;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
  return { token, claims };
}

function signOut(message = "") {
  localStorage.removeItem(TOKEN_KEY);
  renderSignIn(message);
}

async function api(path, { method = "GET", body, token } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function renderSignIn(message = "") {
  show("sign-in");
  $("[data-testid=sign-in-error]").textContent = message;
  $("#sign-out").hidden = true;
  $("[data-testid=signed-in-as]").textContent = "";
  const devForm = $("#dev-form");
  devForm.hidden = true;
  try {
    const config = await api("/api/web/config");
    devForm.hidden = !config.devTokens;
  } catch {
    devForm.hidden = true; // offline, or an older server
  }
}

function setupSignIn() {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token-input").value.trim();
    if (!tokenClaims(token)?.sub) {
      $("[data-testid=sign-in-error]").textContent = "That does not look like a JWT.";
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    route();
  });
  $("#dev-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const data = await api("/api/dev/token", {
        method: "POST",
        body: { userId: $("#dev-user").value.trim(), name: $("#dev-name").value.trim() || undefined },
      });
      localStorage.setItem(TOKEN_KEY, data.token);
      route();
    } catch (error) {
      $("[data-testid=sign-in-error]").textContent = `Dev sign-in refused: ${error.message}`;
    }
  });
  $("#sign-out").addEventListener("click", () => signOut());
}

// -- trip list ----------------------------------------------------------------

async function renderTripList(auth) {
  show("trip-list");
  const list = $("[data-testid=trip-list]");
  const error = $("[data-testid=trip-list-error]");
  error.textContent = "";
  try {
    const data = await api("/api/trips", { token: auth.token });
    list.replaceChildren(
      ...data.trips.map((trip) =>
        el(
          "li",
          {},
          el(
            "a",
            { href: `/trips/${encodeURIComponent(trip.tripId)}`, "data-testid": `trip-link-${trip.tripId}` },
            el("span", { text: trip.fields.name || trip.tripId }),
            el("small", { text: [trip.fields.destination, trip.permissionLevel].filter(Boolean).join(" · ") }),
          ),
        ),
      ),
    );
    if (!data.trips.length) list.replaceChildren(el("li", { class: "hint", text: "No trips yet." }));
  } catch (e) {
    if (e.status === 401) return signOut("Your token was refused; sign in again.");
    error.textContent = navigator.onLine ? `Could not load trips: ${e.message}` : "Offline.";
  }
}

function setupTripList() {
  $("#new-trip-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const auth = currentToken();
    if (!auth) return signOut();
    try {
      const trip = await api("/api/trips", {
        method: "POST",
        token: auth.token,
        body: {
          fields: {
            name: $("#new-trip-name").value.trim(),
            destination: $("#new-trip-destination").value.trim(),
            startDate: "",
            endDate: "",
            budget: 0,
            notes: "",
            itinerary: [],
          },
        },
      });
      location.assign(`/trips/${encodeURIComponent(trip.tripId)}`);
    } catch (e) {
      $("[data-testid=trip-list-error]").textContent = `Could not create the trip: ${e.message}`;
    }
  });
}

// -- the editor -----------------------------------------------------------------

const FIELD_LABELS = {
  name: "Trip name",
  destination: "Destination",
  startDate: "Start",
  endDate: "End",
  budget: "Budget",
  notes: "Notes",
  itinerary: "Itinerary",
};

/** A field's label for people ("trip.destination" -> "Destination"). */
function labelOf(field) {
  const name = String(field || "").replace(/^trip\./, "");
  return FIELD_LABELS[name] || name;
}

// Why an edit of ours was rolled back, in people's words (never the server's
// validation text, which is for developers).
const ROLLBACK_REASONS = {
  invalid_value: "this value is not accepted for this field.",
  invalid_expected_version: "the trip changed in the meantime. Check the value and try again.",
  stale_previous_value: "the trip changed in the meantime. Check the value and try again.",
  history_unavailable: "the trip changed too much in the meantime. Check the value and try again.",
  server_error: "the server could not store it. Try again in a moment.",
  rate_limited: "too many changes were sent at once. Try again in a moment.",
};

function rollbackReason(payload, permissionLevel) {
  if (payload.rollbackReason === "permission_denied") {
    return permissionLevel === "viewer"
      ? "viewers cannot edit this trip."
      : "you do not have permission to edit this trip.";
  }
  return ROLLBACK_REASONS[payload.rollbackReason] || "the server refused it.";
}

// `error` events shown to people: the codes whose message is not already
// about one of our edits (a rollback follows those and says more).
const ERROR_TEXT = {
  INVALID_MESSAGE_FORMAT: "The server could not read a message from this page. Reload the page.",
  MESSAGE_TOO_LARGE: "That change is too large to send.",
  NOT_FOUND: "That no longer exists on the server.",
  SERVER_ERROR: "The server had a problem. Try again in a moment.",
};

const STATUS_CLASS = {
  [STATUS.SYNCED]: "synced",
  [STATUS.SYNCING]: "syncing",
  [STATUS.OFFLINE]: "offline",
  [STATUS.CONFLICT]: "conflict",
  [STATUS.NOT_SAVED]: "not-saved",
};

function colorFor(userId) {
  let hash = 0;
  for (const c of userId) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 45%)`;
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("") || "?";
}

function chatSessionId(userId) {
  const key = `tripsage.chat.${userId}`;
  let id = localStorage.getItem(key);
  if (!id) {
    const safe = userId.replace(/[^A-Za-z0-9_.:@-]/g, "_").slice(0, 64);
    id = `web-${safe}-${newId("s").slice(2, 14)}`;
    localStorage.setItem(key, id);
  }
  return id;
}

class Editor {
  constructor(auth, tripId) {
    this.auth = auth;
    this.tripId = tripId;
    this.userId = auth.claims.sub;
    this.dirty = new Map(); // field -> {value, version} the edit started from
    this.timers = new Map();
    this.countdown = null;
    this.shownConflict = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const sessionId = chatSessionId(this.userId);
    this.manager = new WebSocketManager({
      url: `${scheme}//${location.host}/ws/chat/${encodeURIComponent(sessionId)}`,
      token: auth.token,
      sessionId,
      channels: [`trip:${tripId}`],
    });
    this.sync = new TripSync({ manager: this.manager, tripId, userId: this.userId });
    this.chat = new ChatSession({ manager: this.manager, sessionId });
    this.inputs = $$("[data-field]");
  }

  start() {
    show("editor");
    this._bindInputs();
    this._bindItinerary();
    this._bindShare();
    this._bindChat();
    this._bindConflicts();
    const sync = this.sync;
    sync.on("fields", ({ names }) => this.renderFields(names));
    sync.on("status", () => this.renderStatus());
    sync.on("presence", () => this.renderPresence());
    sync.on("permission", () => this.renderPermission());
    sync.on("outcome", (o) => this.onOutcome(o));
    sync.on("notice", (n) => this.onNotice(n));
    sync.on("denied", (p) => this.notice(`You cannot open this trip: ${p.message}`, true));
    this.manager.on("state", () => this.renderStatus());
    this.manager.on("fatal", ({ code }) => {
      if (code === 3000) signOut("Your token was refused; sign in again.");
      else this.notice("Disconnected from the server.", true);
    });
    // A reload or a closed tab keeps what was typed but not yet committed.
    window.addEventListener("pagehide", () => this.commitAll());
    $("[data-testid=notice-dismiss]").addEventListener("click", () => {
      this.sync.dismissUnsaved();
      this.notice("");
    });
    this.renderFields(null);
    this.renderPermission();
    this.renderStatus();
    this.manager.start();
  }

  // -- fields ---------------------------------------------------------------------

  read(input) {
    if (input.dataset.kind === "number") return input.value === "" ? null : Number(input.value);
    return input.value;
  }

  write(input, value) {
    const text = value == null ? "" : String(value);
    if (input.value !== text) input.value = text;
  }

  _bindInputs() {
    for (const input of this.inputs) {
      const field = input.dataset.field;
      input.addEventListener("focus", () => this.sync.editingStarted(field));
      input.addEventListener("input", () => {
        if (!this.dirty.has(field)) {
          // The edit starts from the value shown now, at the version we know.
          this.dirty.set(field, { value: this.sync.value(field), version: this.sync.version });
        }
        clearTimeout(this.timers.get(field));
        this.timers.set(field, setTimeout(() => this.commit(field), COMMIT_DELAY_MS));
        this.renderPending(field);
        this.renderStatus();
      });
      input.addEventListener("change", () => this.commit(field));
      input.addEventListener("blur", () => {
        this.commit(field);
        this.sync.editingStopped(field);
      });
    }
  }

  commit(field) {
    clearTimeout(this.timers.get(field));
    this.timers.delete(field);
    const base = this.dirty.get(field);
    if (!base) return;
    this.dirty.delete(field);
    const input = this.inputs.find((i) => i.dataset.field === field);
    const value = this.read(input);
    if (value !== null && input.dataset.kind === "number" && !Number.isFinite(value)) return;
    const unchanged = JSON.stringify(value) === JSON.stringify(this.sync.value(field));
    if (!unchanged) {
      // Only a base we had the server's value for can carry a version.
      const queued = this.sync.isPending(field);
      this.sync.edit(field, value, queued ? null : base);
    }
    this.renderPending(field);
    this.renderStatus();
  }

  commitAll() {
    for (const field of [...this.dirty.keys()]) this.commit(field);
  }

  renderFields(names) {
    const all = names == null;
    for (const input of this.inputs) {
      const field = input.dataset.field;
      if (!all && !names.includes(field)) continue;
      if (!(this.dirty.has(field) && document.activeElement === input)) {
        this.write(input, this.sync.value(field));
      }
      this.renderPending(field);
    }
    if (all || names.includes("itinerary")) this.renderItinerary();
    if (all || names.includes("name")) {
      document.title = `${this.sync.value("name") || "Trip"} · TripSage Sync`;
    }
  }

  renderPending(field) {
    const pending = this.dirty.has(field) || this.sync.isPending(field);
    for (const node of $$(`[data-field="${field}"]`)) node.dataset.pending = String(pending);
  }

  renderStatus() {
    const status = this.sync.status;
    const label = $("[data-testid=sync-status]");
    label.textContent = status;
    label.className = `sync-status ${STATUS_CLASS[status] || ""}`;
    const count = this.sync.pendingCount + this.dirty.size;
    const pending = $("[data-testid=pending-changes]");
    pending.hidden = count === 0;
    pending.textContent = count === 1 ? "1 pending change" : `${count} pending changes`;
    $("[data-testid=notice-dismiss]").hidden = this.sync.unsaved.size === 0;
  }

  renderPermission() {
    const level = this.sync.permissionLevel;
    const canEdit = this.sync.canEdit;
    $("[data-testid=permission-level]").textContent = level ? `You are ${level}` : "";
    const editable = level === null ? true : canEdit; // unknown until joined: allow offline edits
    for (const input of [...this.inputs, $("#itinerary-new"), $("#itinerary-add")]) {
      input.disabled = !editable;
    }
    for (const button of $$("[data-testid=itinerary] button")) button.disabled = !editable;
    $("#share").hidden = level !== "owner";
  }

  renderPresence() {
    const box = $("[data-testid=active-collaborators]");
    const people = this.sync.collaborators;
    box.replaceChildren(
      ...people.map((c) => {
        const name = c.userName || c.userId;
        const where = c.currentField ? ` · ${labelOf(c.currentField)}` : "";
        return el(
          "span",
          {
            class: `avatar${c.isActive === false ? " idle" : ""}`,
            "data-testid": `collaborator-${c.userId}`,
            title: `${name} (${c.permissionLevel})`,
          },
          this._dot(name, c.userId),
          el("span", { text: c.userId === this.userId ? `${name} (you)` : name }),
          where ? el("span", { class: "where", text: where }) : null,
        );
      }),
    );
    for (const span of $$("[data-editing]")) {
      const field = span.dataset.editing;
      const names = people
        .filter((c) => c.currentField === field && c.userId !== this.userId)
        .map((c) => c.userName || c.userId);
      span.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} editing` : "";
      span.dataset.testid = `editing-${field}`;
    }
  }

  _dot(name, userId) {
    const dot = el("span", { class: "dot", text: initials(name) });
    dot.style.background = colorFor(userId); // CSSOM: allowed by the page's CSP
    return dot;
  }

  // -- itinerary (a list field: the server merges previousValue -> optimisticValue) --

  renderItinerary() {
    const items = Array.isArray(this.sync.value("itinerary")) ? this.sync.value("itinerary") : [];
    const list = $("[data-testid=itinerary]");
    const editable = this.sync.permissionLevel === null || this.sync.canEdit;
    list.replaceChildren(
      ...items.map((item, index) => {
        const remove = el("button", { type: "button", text: "✕", title: "Remove" });
        remove.disabled = !editable;
        remove.addEventListener("click", () => {
          const next = [...items];
          next.splice(index, 1);
          this.sync.edit("itinerary", next);
        });
        return el("li", {}, el("span", { text: typeof item === "string" ? item : JSON.stringify(item) }), remove);
      }),
    );
    this.renderPending("itinerary");
  }

  _bindItinerary() {
    const add = () => {
      const text = $("#itinerary-new").value.trim();
      if (!text) return;
      const items = Array.isArray(this.sync.value("itinerary")) ? this.sync.value("itinerary") : [];
      this.sync.edit("itinerary", [...items, text]);
      $("#itinerary-new").value = "";
    };
    $("#itinerary-add").addEventListener("click", add);
    $("#itinerary-new").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        add();
      }
    });
  }

  _bindShare() {
    $("#share-submit").addEventListener("click", async () => {
      const user = $("#share-user").value.trim();
      if (!user) return;
      try {
        await api(
          `/api/trips/${encodeURIComponent(this.tripId)}/collaborators/${encodeURIComponent(user)}`,
          { method: "PUT", token: this.auth.token, body: { permissionLevel: $("#share-level").value } },
        );
        this.notice(`Shared with ${user}.`);
        $("#share-user").value = "";
      } catch (e) {
        this.notice(`Could not share: ${e.message}`, true);
      }
    });
  }

  // -- outcomes and notices ---------------------------------------------------------

  notice(text, bad = false) {
    const box = $("[data-testid=notice]");
    box.textContent = text;
    box.classList.toggle("bad", bad);
    box.hidden = !text;
  }

  onOutcome({ kind, field, payload }) {
    const label = labelOf(field);
    if (kind === "rejected") {
      if (payload.conflictId) this.notice(`${label}: a collaborator changed it too; choose a value.`);
      else if (payload.rejectionReason === "invalid_message") {
        this.notice(`Your change to ${label} could not be saved: ${ROLLBACK_REASONS.invalid_value}`, true);
      } else {
        const who = payload.conflictingUpdate?.userId || "a collaborator";
        this.notice(`Your change to ${label} was not kept: a later change by ${who} won.`, true);
      }
    } else if (kind === "rollback") {
      const reason = rollbackReason(payload, this.sync.permissionLevel);
      this.notice(`Your change to ${label} could not be saved: ${reason}`, true);
    }
    this.renderStatus();
  }

  onNotice({ kind, payload }) {
    if (kind === "conflict_detected") {
      const label = labelOf(payload.fieldName);
      this.notice(
        payload.winningUserId
          ? `${label}: concurrent edits; ${payload.winningUserId}'s value was kept.`
          : `${label}: concurrent edits; a collaborator has to choose the value.`,
      );
    } else if (kind === "error" && payload.code && payload.code !== "RATE_LIMITED") {
      const text =
        ERROR_TEXT[payload.code] ||
        (payload.code === "PERMISSION_DENIED" ? payload.message : null) ||
        `The server refused a request (${payload.code}).`;
      this.notice(text, true);
    }
  }

  // -- manual conflicts ---------------------------------------------------------------

  _bindConflicts() {
    this.sync.on("conflict", () => this.renderConflict());
    this.sync.on("conflict_resolved", (p) => {
      const label = labelOf(p.fieldName);
      const who = p.resolvedBy === "system" ? "automatically" : `by ${p.resolvedBy}`;
      this.notice(`${label} resolved ${who}: ${JSON.stringify(p.resolvedValue)}.`);
      this.renderConflict();
    });
    $("#conflict-custom-submit").addEventListener("click", () => {
      const conflict = this.shownConflict;
      const raw = $("#conflict-custom").value.trim();
      if (!conflict || !raw) return;
      const number = Number(raw);
      const customValue = typeof conflict.options?.[0]?.value === "number" && Number.isFinite(number) ? number : raw;
      this.sync.resolveConflict(conflict.conflictId, { customValue });
    });
    $("#conflict-dialog").addEventListener("cancel", (event) => event.preventDefault());
  }

  renderConflict() {
    const dialog = $("#conflict-dialog");
    const conflict = [...this.sync.conflicts.values()][0] || null;
    clearInterval(this.countdown);
    this.shownConflict = conflict;
    if (!conflict) {
      if (dialog.open) dialog.close();
      return;
    }
    $("[data-testid=conflict-field]").textContent = labelOf(conflict.fieldName);
    const options = $("[data-testid=conflict-options]");
    options.replaceChildren(
      ...conflict.options.map((option) => {
        const button = el(
          "button",
          {
            type: "button",
            class: option.id === conflict.defaultOption ? "default" : "",
            "data-testid": `conflict-option-${option.id}`,
          },
          el("span", { text: JSON.stringify(option.value) }),
          el("small", {
            text: `${option.description || ""} (${option.source})${option.id === conflict.defaultOption ? " · default" : ""}`,
          }),
        );
        button.addEventListener("click", () => {
          this.sync.resolveConflict(conflict.conflictId, { chosenOptionId: option.id });
          for (const b of $$("button", options)) b.disabled = true;
        });
        return button;
      }),
    );
    $("#conflict-custom").value = "";
    const deadline = conflict.resolveBy
      ? Date.parse(conflict.resolveBy)
      : Date.now() + (conflict.autoResolveAfter || 30000);
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      $("[data-testid=conflict-countdown]").textContent = `${seconds}s`;
    };
    tick();
    this.countdown = setInterval(tick, 1000);
    if (!dialog.open) dialog.showModal();
  }

  // -- chat -------------------------------------------------------------------------

  _bindChat() {
    const list = $("[data-testid=chat-messages]");
    const nodes = new Map();
    const node = (item) => {
      let li = nodes.get(item.id);
      if (!li) {
        li = el("li", { "data-testid": item.kind === "tool" ? `tool-${item.id}` : `chat-message-${item.id}` });
        nodes.set(item.id, li);
        list.append(li);
      }
      return li;
    };
    this.chat.on("message", (m) => {
      const li = node(m);
      li.className = `${m.role}${m.streaming && m.role === "assistant" ? " streaming" : ""}`;
      li.dataset.complete = String(!m.streaming);
      li.dataset.chunks = String(m.chunks.size); // how many streamed pieces were shown
      li.textContent = m.content;
      list.scrollTop = list.scrollHeight;
    });
    this.chat.on("tool", (t) => {
      const li = node(t);
      li.className = "tool";
      li.dataset.done = String(t.done);
      li.replaceChildren(
        el("span", { text: `Tool ${t.name}: ${t.status}` }),
        el("progress", { max: 1, value: t.progress }),
      );
    });
    this.chat.on("agent_status", (s) => {
      $("[data-testid=agent-status]").textContent = s.isActive
        ? `${s.agentId} is working${s.currentTask ? `: ${s.currentTask}` : ""}…`
        : "";
    });
    $("#chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const content = $("#chat-input").value.trim();
      if (!content) return;
      this.chat.send(content);
      $("#chat-input").value = "";
    });
  }
}

// -- routing ---------------------------------------------------------------------

function route() {
  const auth = currentToken();
  if (!auth) return renderSignIn();
  const name = auth.claims.name || auth.claims.sub;
  $("[data-testid=signed-in-as]").textContent = name;
  $("#sign-out").hidden = false;
  const match = location.pathname.match(/^\/trips\/([^/]+)\/?$/);
  if (match) {
    new Editor(auth, decodeURIComponent(match[1])).start();
  } else {
    $("[data-testid=sync-status]").textContent = navigator.onLine ? STATUS.SYNCED : STATUS.OFFLINE;
    renderTripList(auth);
  }
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  const ready = () => {
    if (navigator.serviceWorker.controller) document.body.dataset.offlineReady = "true";
  };
  navigator.serviceWorker.addEventListener("controllerchange", ready);
  navigator.serviceWorker.register("/sw.js").then(ready, (error) => {
    console.warn("offline support unavailable", error);
  });
  ready();
}

setupSignIn();
setupTripList();
registerServiceWorker();
route();
