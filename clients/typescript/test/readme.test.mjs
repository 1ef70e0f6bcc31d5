// The README's TypeScript client example, run as it is written there (the block that
// starts with `import { WebSocketManager, TripSync }`), against a real server: only the
// import path, the host and the two names it leaves to the app are filled in.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import WebSocket from "ws";
import { startServer } from "./server.mjs";
import { createTrip, within } from "./helpers.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const README = resolve(HERE, "../../../README.md");
const DIST = pathToFileURL(resolve(HERE, "../dist/index.js")).href;

function example() {
  const text = readFileSync(README, "utf8");
  const match = text.match(/```ts\n(import \{ WebSocketManager, TripSync \}[\s\S]*?)```/);
  assert.ok(match, "README.md has the TypeScript client example");
  return match[1];
}

test("the README's example connects, edits and logs the confirmation", async () => {
  const server = await startServer();
  const dir = mkdtempSync(join(tmpdir(), "tripsage-readme-"));
  const lines = [];
  const log = console.log;
  try {
    await createTrip(server, "alice", "trip-456", { destination: "Paris, France" });
    const code = example()
      .replace('"@tripsage/sync-client"', JSON.stringify(DIST))
      .replace("ws://localhost:8000", server.ws);
    const file = join(dir, "example.mjs");
    writeFileSync(
      file,
      `const token = ${JSON.stringify(server.token("alice"))};\n` +
        `const fetchFreshToken = async () => token;\n${code}\nexport { manager, trip };\n`,
    );
    globalThis.WebSocket = WebSocket; // a browser has one; Node 20 does not
    const logged = new Promise((ok) => {
      console.log = (...args) => {
        lines.push(args.join(" "));
        ok();
      };
    });
    const { manager, trip } = await import(pathToFileURL(file).href);
    await within(logged, "the example's outcome line");
    assert.deepEqual(lines, ["confirmed destination"]);
    assert.equal(trip.value("destination"), "Rome, Italy");
    trip.destroy();
    manager.stop();
  } finally {
    console.log = log;
    delete globalThis.WebSocket;
    rmSync(dir, { recursive: true, force: true });
    await server.stop();
  }
});
