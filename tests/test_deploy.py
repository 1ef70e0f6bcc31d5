"""The operator files (Dockerfile, compose.yaml, docs/deploy/) say only what is true.

No Docker engine runs in CI, so the images are not built here; what can be checked
without one is: every setting they set exists, the image copies every source folder
the package is built from and runs as a user of its own with a health check, and
every metric the Grafana dashboard asks for is one a running server exposes.
"""

from __future__ import annotations

import json
import re
import tomllib

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess
from tripsage_sync.api.settings import unknown_variables

pytestmark = pytest.mark.anyio

FILES = ("Dockerfile", "compose.yaml", "docs/deploy/tripsage-sync.service")
_VARIABLE = re.compile(r"\bTRIPSAGE_[A-Z_]+\b")
_METRIC = re.compile(r"\b((?:tripsage|process)_[a-z_]+)\b")


@pytest.mark.parametrize("name", FILES)
def test_every_variable_the_files_set_is_a_setting(name: str) -> None:
    text = (ROOT / name).read_text()
    variables = set(_VARIABLE.findall(text))
    assert variables, name
    assert unknown_variables(dict.fromkeys(variables, "x")) == []


def test_the_image_copies_every_source_folder_runs_unprivileged_and_checks_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for folder in {path.split("/")[0] for path in mapping.values()}:
        assert re.search(rf"^COPY {folder} ", dockerfile, re.M), folder
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users
    assert users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile
    assert "/health" in dockerfile
    assert re.search(r'^CMD \["tripsage-sync", "serve"\]', dockerfile, re.M)
    assert "TRIPSAGE_DEV_MODE" not in dockerfile  # no demo sign-in in the image


def test_the_cluster_compose_file_runs_two_nodes_on_postgres_and_redis() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    for needle in ("TRIPSAGE_DATABASE_URL", "TRIPSAGE_REDIS_URL", "node-a", "node-b"):
        assert needle in compose
    assert (ROOT / "docs/deploy/nginx.conf").exists()
    assert "./docs/deploy/nginx.conf" in compose
    nginx = (ROOT / "docs/deploy/nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx


def test_the_systemd_unit_restarts_after_a_maintenance_exit() -> None:
    unit = (ROOT / "docs/deploy/tripsage-sync.service").read_text()
    assert "Restart=always" in unit  # maintenance drains and exits 0
    assert re.search(r"^User=(?!root)\w+", unit, re.M)
    config = re.search(r"^Environment=TRIPSAGE_CONFIG=(\S+)", unit, re.M)
    assert config is not None


async def test_every_metric_of_the_dashboard_is_exposed(server: ServerProcess) -> None:
    dashboard = json.loads((ROOT / "docs/deploy/grafana-dashboard.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in _METRIC.findall(target["expr"])
    }
    assert len(asked) >= 15
    async with httpx.AsyncClient() as http:
        text = (await http.get(server.http + "/metrics")).text
    exposed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            exposed.add(name)
            if kind == "histogram":
                exposed.update(name + suffix for suffix in ("_bucket", "_count", "_sum"))
    assert asked <= exposed, sorted(asked - exposed)
