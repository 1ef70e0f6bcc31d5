#!/usr/bin/env bash
# Side-by-side Yjs benchmark: this server (as "py") next to y-websocket-server, Hocuspocus+SQLite
# and pycrdt-websocket, with the shared harness (/work/shared/peers: bench.mjs, run-matrix.sh).
#
#   bench/peers.sh [results-dir]          REPS=1 SCENARIOS="s10x200 ..." SERVERS="py ywss ..."
#
# The harness starts a fresh server per run and connects to $PY_URL/<doc> at once, with doc
# names d-<scenario>.py.r<rep> (and -0..-99 for --docs 100). Trips are never created on connect
# (a non-collaborator is refused), so this script creates every one of them first, through the
# HTTP API of a seeding server, in a template database; each run copies the template and execs
# the server (the harness reads CPU and memory from the PID it started). Loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$HERE/bench/results-peers}
PEERS=${PEERS_DIR:-/tmp/peers}
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
export REPS=${REPS:-1}
export SCENARIOS=${SCENARIOS:-"s10x200 s50x100 s100x50 idle1000-1doc idle1000-100docs"}
SERVERS=${SERVERS:-"py ywss hocus-sqlite pycrdt"}
PORT=${PY_PORT:-8000}
WORK=$(mktemp -d /tmp/tripsage-peers.XXXXXX)
trap 'kill "$SEED_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
SEED_PID=""

if [ ! -d "$PEERS/node_modules" ]; then  # the harness README's set-up
  rm -rf "$PEERS" && cp -r /work/shared/peers "$PEERS" && chmod -R u+w "$PEERS"
  (cd "$PEERS" && npm ci --no-audit --no-fund)
  (cd "$PEERS" && python3 -m venv pyenv && pyenv/bin/pip install -q pycrdt-websocket==0.16.5 uvicorn websockets)
fi

export TRIPSAGE_JWT_SECRET=${TRIPSAGE_JWT_SECRET:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')}
# One user owns every bench trip and runs every client: lift the per-user and per-IP limits.
export TRIPSAGE_RATE_LIMIT_CONNECTIONS_PER_MIN=0 TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN=0
export TRIPSAGE_RATE_LIMIT_YJS_FRAMES_PER_MIN=0 TRIPSAGE_MAX_CONNECTIONS=5000
export TRIPSAGE_MAX_CONNECTIONS_PER_USER=5000 TRIPSAGE_LOG_LEVEL=warning
TOKEN=$("$PY" -m tripsage_sync.api.cli token --user bench --ttl 86400)

# 1. the template database: every trip the harness will open, created over HTTP
SEED_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$HERE" && exec "$PY" -m tripsage_sync.api.cli serve --host 127.0.0.1 --port "$SEED_PORT" --db "$WORK/template.db") &
SEED_PID=$!
"$PY" - "$SEED_PORT" "$TOKEN" <<'PYEOF'
import os, sys, time, httpx
port, token = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try:
        if httpx.get(base + "/health", timeout=0.5).status_code == 200:
            break
    except httpx.HTTPError:
        time.sleep(0.05)
names = []
for rep in range(1, int(os.environ["REPS"]) + 1):
    for sc in os.environ["SCENARIOS"].split():
        doc = f"d-{sc}.py.r{rep}"
        names += [f"{doc}-{i}" for i in range(100)] if "100docs" in sc else [doc]
with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
    for name in names:
        r = http.post("/api/trips", json={"tripId": name, "fields": {}, "manualResolutionFields": []})
        assert r.status_code == 201, r.text
print(f"seeded {len(names)} trips", file=sys.stderr)
PYEOF
kill "$SEED_PID"; wait "$SEED_PID" 2>/dev/null || true; SEED_PID=""

# 2. the server the harness starts for each run: a fresh copy of the template, then exec
cat > "$WORK/serve.sh" <<SH
#!/usr/bin/env bash
cp "$WORK/template.db" "$WORK/run.db" && rm -f "$WORK/run.db-wal" "$WORK/run.db-shm"
cd "$HERE" && exec "$PY" -m tripsage_sync.api.cli serve --host 127.0.0.1 --port $PORT --db "$WORK/run.db"
SH
chmod +x "$WORK/serve.sh"

# 3. the matrix (run-matrix.sh: fresh server per run, server on CPU 0, load generator on CPU 1)
mkdir -p "$OUT"
PY_CMD="$WORK/serve.sh" PY_PORT=$PORT PY_URL="ws://127.0.0.1:$PORT/ws/yjs" \
PY_TOKEN="$TOKEN" PY_TOKEN_PARAM=token PY_EXTRA_ARGS="--map-name trip --text-name none" \
  "$PEERS/run-matrix.sh" "$OUT" $SERVERS
node "$PEERS/summarize.mjs" "$OUT"
