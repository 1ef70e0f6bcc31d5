// ChatSession: a streamed reply reads in chunkIndex order, from the server's demo agent,
// from an agent of ours that sends its chunks out of order, and (over a scripted socket,
// where no server reorders them) from chunks delivered out of order.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ChatSession, WebSocketManager } from "../dist/index.js";
import { startServer } from "./server.mjs";
import { MANY_CONNECTIONS, manager, next, open, within } from "./helpers.mjs";

/** Every content a message showed, until its completion; resolves with the message. */
function reply(chat) {
  const shown = [];
  const done = new Promise((resolve) => {
    chat.on("message", (m) => {
      if (m.role !== "assistant") return;
      shown.push(m.content);
      if (m.complete) resolve(m);
    });
  });
  return { shown, done };
}

/** Each content shown is a prefix of the next, and of the final text. */
function assertGrowsInOrder(shown, final) {
  for (const [i, content] of shown.entries()) {
    assert.ok(final.startsWith(content), `content ${i} is no prefix: ${JSON.stringify(content)}`);
    if (i > 0) assert.ok(content.startsWith(shown[i - 1]), `content ${i} went back`);
  }
}

describe("the demo agent", () => {
  let server;
  before(async () => {
    server = await startServer({ env: { TRIPSAGE_DEMO_AGENT: "1", ...MANY_CONNECTIONS } });
    // The in-process agent connects once the server is up: polling a process start.
    const deadline = Date.now() + 10_000;
    while ((await (await fetch(`${server.http}/health`)).json()).connections < 1) {
      if (Date.now() > deadline) throw new Error("the demo agent did not connect");
      await new Promise((ok) => setTimeout(ok, 50));
    }
  });
  after(async () => {
    await server?.stop();
  });

  test("a reply streamed in order: tool call, chunks, completion", async () => {
    const m = manager(server, "alice", { sessionId: "ts-chat-demo" });
    const chat = new ChatSession({ manager: m, sessionId: "ts-chat-demo" });
    try {
      await open(m);
      const { shown, done } = reply(chat);
      const tool = next(chat, "tool", (t) => t.done);
      chat.send("hello agent");
      const message = await done;
      assert.match(message.content, /^You said: "hello agent"\. I searched flights/);
      assert.equal(message.streaming, false);
      assert.ok(message.chunks.size > 3);
      assertGrowsInOrder(shown, message.content);
      assert.equal((await tool).name, "search_flights");
      assert.ok(chat.agentStatus);
      const mine = chat.order.find((x) => x.kind === "message" && x.role === "user");
      assert.equal(mine.content, "hello agent");
    } finally {
      chat.destroy();
      m.stop();
    }
  });
});

describe("an agent sending its chunks out of order", () => {
  let server;
  before(async () => {
    server = await startServer({ env: MANY_CONNECTIONS });
  });
  after(async () => {
    await server?.stop();
  });

  test("the reply reads in chunkIndex order", async () => {
    const agent = manager(server, "ts-agent", { role: "agent", sessionId: "agent-ts-agent" });
    const user = manager(server, "alice", { sessionId: "ts-chat-shuffle" });
    const chat = new ChatSession({ manager: user, sessionId: "ts-chat-shuffle" });
    const words = ["Four ", "chunks ", "in ", "order."];
    agent.on("chat_message", (event) => {
      if (event.payload.role !== "user") return;
      const session = { sessionId: event.sessionId };
      const messageId = `reply-${event.payload.messageId}`;
      for (const index of [2, 0, 3, 1]) {
        const payload = { messageId, content: words[index], chunkIndex: index, isComplete: index === 3 };
        agent.sendMessage("chat_message_chunk", payload, session);
      }
      agent.sendMessage("chat_message_complete", { messageId, finalContent: words.join("") }, session);
    });
    try {
      await open(agent);
      await open(user);
      const { shown, done } = reply(chat);
      chat.send("shuffle please");
      const message = await done;
      assert.equal(message.content, "Four chunks in order.");
      assertGrowsInOrder(shown, message.content);
    } finally {
      chat.destroy();
      user.stop();
      agent.stop();
    }
  });
});

describe("our own message", () => {
  let server;
  before(async () => {
    server = await startServer({ env: MANY_CONNECTIONS });
  });
  after(async () => {
    await server?.stop();
  });

  test("is sending until the server's echo, then sent (one message, not two)", async () => {
    const m = manager(server, "alice", { sessionId: "ts-chat-own" });
    const chat = new ChatSession({ manager: m, sessionId: "ts-chat-own" });
    try {
      await open(m);
      const echoed = next(m, "chat_message", (e) => e.payload.content === "hello there");
      chat.send("hello there");
      const [mine] = chat.order;
      assert.equal(mine.sending, true);
      await echoed;
      assert.equal(chat.order.length, 1, "the echo is the same message");
      assert.equal(mine.content, "hello there");
      assert.equal(mine.streaming, false);
      assert.ok(!mine.sending, "no longer sending once the server stored it");
    } finally {
      chat.destroy();
      m.stop();
    }
  });
});

/** A socket the test scripts: frames go to `sent`, `deliver()` plays the server. */
class ScriptedSocket {
  static last = null;
  static #framed = null;
  /** Resolves with the next socket once it sent its first frame. */
  static firstFrame() {
    return new Promise((resolve) => (ScriptedSocket.#framed = resolve));
  }
  readyState = 0;
  sent = [];
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  constructor(url) {
    this.url = url;
    ScriptedSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }
  send(data) {
    this.sent.push(JSON.parse(data));
    if (this.sent.length === 1) ScriptedSocket.#framed?.(this);
  }
  close(code = 1000, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  deliver(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}

test("chunks delivered out of order (no server reordering them) read in index order", async () => {
  const m = new WebSocketManager({ url: "ws://scripted", token: "t", sessionId: "s1", WebSocket: ScriptedSocket });
  const chat = new ChatSession({ manager: m, sessionId: "s1" });
  const opened = next(m, "open");
  const framed = ScriptedSocket.firstFrame();
  m.start();
  const socket = await within(framed, "the authentication frame");
  assert.deepEqual(socket.sent[0], { token: "t", sessionId: "s1", channels: [] }); // first frame
  socket.deliver({ success: true, userId: "u", connectionId: "c" });
  await opened;
  const chunk = (chunkIndex, content, isComplete = false) => ({
    type: "chat_message_chunk",
    sessionId: "s1",
    payload: { messageId: "r1", chunkIndex, content, isComplete },
  });
  const contents = [];
  chat.on("message", (msg) => contents.push([msg.content, msg.streaming]));
  socket.deliver(chunk(1, "b"));
  socket.deliver({ type: "batch", payload: { messages: [chunk(3, "d", true), chunk(0, "a")] } });
  socket.deliver(chunk(2, "c"));
  socket.deliver(chunk(2, "c")); // a duplicate changes nothing
  assert.deepEqual(contents.slice(0, 5), [
    ["b", true],
    ["bd", false],
    ["abd", true],
    ["abcd", true],
    ["abcd", true],
  ]);
  socket.deliver({ type: "chat_message_complete", sessionId: "s1", payload: { messageId: "r1", finalContent: "abcd" } });
  const message = chat.messages.get("r1");
  assert.equal(message.content, "abcd");
  assert.equal(message.streaming, false);
  socket.deliver(chunk(5, "late")); // after the completion: the final text stays
  assert.equal(message.content, "abcd");
  socket.deliver({ type: "chat_message_chunk", sessionId: "other", payload: { messageId: "r2", chunkIndex: 0, content: "no" } });
  assert.equal(chat.messages.has("r2"), false);
  chat.destroy();
  m.stop();
});
