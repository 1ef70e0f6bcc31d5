# TripSage Sync, one node on its embedded SQLite database (README "Deploying").
#   docker build -t tripsage-sync .
#   docker run -p 8000:8000 -v tripsage-data:/var/lib/tripsage-sync tripsage-sync
# Cluster mode (PostgreSQL + Redis, two nodes behind a proxy): compose.yaml.
FROM python:3.11-slim

# A user of its own, no login, no password; the database lives in its volume.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tripsage-sync \
        --shell /usr/sbin/nologin tripsage \
    && mkdir -p /var/lib/tripsage-sync \
    && chown tripsage:tripsage /var/lib/tripsage-sync

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sync ./sync
COPY api ./api
COPY storage ./storage
COPY client ./client
RUN pip install --no-cache-dir . && rm -rf /src

USER tripsage
WORKDIR /var/lib/tripsage-sync
ENV TRIPSAGE_HOST=0.0.0.0 \
    TRIPSAGE_PORT=8000 \
    TRIPSAGE_DB=/var/lib/tripsage-sync/tripsage.db \
    TRIPSAGE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/tripsage-sync"]
EXPOSE 8000

# GET /health answers 200 while the node can serve (503 while draining or when storage fails).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

# SIGTERM drains (connection_close to every client, then 1001) within TRIPSAGE_SHUTDOWN_GRACE_S.
STOPSIGNAL SIGTERM
CMD ["tripsage-sync", "serve"]
