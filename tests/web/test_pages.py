"""The page, its modules and the demo sign-in over plain HTTP (no browser needed)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ServerProcess
from tripsage_sync.api.web.feature import STATIC_SUFFIXES, WEB_DIR


@pytest.mark.parametrize("path", ["/", "/app", "/trips/123"])
def test_every_app_path_serves_the_page(server: ServerProcess, path: str) -> None:
    response = httpx.get(server.http + path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in response.text
    assert 'data-testid="trip-editor"' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/client.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/sw.js", "text/javascript"),
    ],
)
def test_modules_and_service_worker(server: ServerProcess, path: str, kind: str) -> None:
    response = httpx.get(server.http + path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(kind)
    assert response.headers["cache-control"] == "no-cache"


def test_static_files_stay_inside_the_web_directory(server: ServerProcess) -> None:
    assert httpx.get(server.http + "/static/../web.py").status_code == 404
    assert httpx.get(server.http + "/static/%2e%2e/web.py").status_code == 404
    assert httpx.get(server.http + "/static/../app.py").status_code == 404
    # The page's module shares the folder (api/web/feature.py): never served.
    assert (WEB_DIR / "__init__.py").is_file()
    for name in ("__init__.py", "__pycache__/", "__pycache__/__init__.cpython-311.pyc"):
        assert httpx.get(server.http + "/static/" + name).status_code == 404, name
    assert sorted(p.name for p in WEB_DIR.iterdir() if p.suffix in STATIC_SUFFIXES) == [
        "app.js",
        "client.js",
        "index.html",
        "style.css",
        "sw.js",
    ]


def dev_token(server: ServerProcess, body: object) -> httpx.Response:
    return httpx.post(server.http + "/api/dev/token", json=body)


def config(server: ServerProcess) -> object:
    return httpx.get(server.http + "/api/web/config").json()


def test_dev_tokens_are_off_by_default(server: ServerProcess) -> None:
    assert dev_token(server, {"userId": "mallory"}).status_code == 404
    assert config(server) == {"devTokens": False}


def test_dev_mode_with_an_explicit_secret_keeps_dev_tokens_off(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(dev_mode=1)  # server_factory sets TRIPSAGE_JWT_SECRET
    assert dev_token(server, {"userId": "mallory"}).status_code == 404
    assert config(server) == {"devTokens": False}


@pytest.mark.parametrize("setting", [{"dev_mode": 1}, {"demo_agent": 1}])
def test_dev_tokens_in_dev_mode_without_a_secret(
    server_factory: Callable[..., ServerProcess], setting: dict[str, int]
) -> None:
    server = server_factory(secret=None, **setting)
    assert config(server) == {"devTokens": True}
    response = dev_token(server, {"userId": "dana", "name": "Dana"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    token = response.json()["token"]
    trips = httpx.get(server.http + "/api/trips", headers={"Authorization": f"Bearer {token}"})
    assert trips.status_code == 200
    assert trips.json() == {"trips": []}


def test_dev_tokens_refuse_bad_requests(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(secret=None, dev_mode=1)
    for body in [
        {},
        {"userId": ""},
        {"userId": "a b"},
        {"userId": "x" * 65},
        {"userId": "a", "role": "admin"},
    ]:
        response = dev_token(server, body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "INVALID_MESSAGE_FORMAT"
