// A real TripSage Sync server for the package's tests: started per test file on a free
// port with its own SQLite file in a temp dir, stopped when the file's tests end.
//
// The Python interpreter is $TRIPSAGE_PYTHON, else the repository's .venv (.ci/run
// makes it). Tokens are HS256 JWTs signed with the secret the server was given.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const SECRET = "ts-client-test-secret-" + "x".repeat(40);

function python() {
  if (process.env.TRIPSAGE_PYTHON) return process.env.TRIPSAGE_PYTHON;
  const venv = join(ROOT, ".venv/bin/python");
  if (existsSync(venv)) return venv;
  throw new Error("no Python: set TRIPSAGE_PYTHON or make the repository's .venv");
}

function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

const b64url = (data) => Buffer.from(data).toString("base64url");

/** An HS256 JWT for `userId`, as the server's identity provider would sign it. */
export function mintToken(userId, { ttlS = 3600, name, role, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: userId, iat: now, exp: now + ttlS };
  if (name) claims.name = name;
  if (role && role !== "user") claims.role = role;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Spawn the server on `port` over the database in `dir`; resolves once /health answers. */
async function spawnServer(port, dir, env) {
  const child = spawn(
    python(),
    ["-m", "tripsage_sync.api.cli", "serve", "--port", String(port), "--db", join(dir, "t.db")],
    {
      cwd: ROOT,
      env: { ...process.env, TRIPSAGE_JWT_SECRET: SECRET, TRIPSAGE_LOG_LEVEL: "WARNING", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const proc = { child, stderr: "" };
  child.stderr.on("data", (chunk) => (proc.stderr += chunk));
  const http = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited early:\n${proc.stderr}`);
    try {
      if ((await fetch(`${http}/health`)).ok) break;
    } catch {
      // not listening yet: polling a process start, not waiting on an event
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server did not start:\n${proc.stderr}`);
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return proc;
}

async function stopProcess(proc) {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    const exited = new Promise((ok) => proc.child.once("exit", ok));
    proc.child.kill("SIGTERM");
    await exited;
  }
}

/**
 * Start a server; resolves to {http, ws, token(userId, opts), logs(), restart(), stop()}.
 * `env` adds TRIPSAGE_* settings (e.g. {TRIPSAGE_DEV_MODE: "1"}). `restart()` stops it
 * (SIGTERM: clients get connection_close, then close 1001) and starts it again on the
 * same port and database.
 */
export async function startServer({ env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tripsage-ts-"));
  const port = await freePort();
  let proc = await spawnServer(port, dir, env);
  let logs = "";
  return {
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    token: (userId, opts) => mintToken(userId, opts),
    logs: () => logs + proc.stderr,
    async restart() {
      await stopProcess(proc);
      logs += proc.stderr;
      proc = await spawnServer(port, dir, env);
    },
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
