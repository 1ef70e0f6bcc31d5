import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./server.mjs";

test("a real server starts and answers /health", async () => {
  const server = await startServer();
  try {
    const health = await (await fetch(`${server.http}/health`)).json();
    assert.ok(health);
  } finally {
    await server.stop();
  }
});
