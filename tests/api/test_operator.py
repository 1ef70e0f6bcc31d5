"""The operator's first hour: each common mistake is one line (the path or address, and
the fix), exit code 2, no traceback; nothing is created that the operator did not ask for.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.anyio

_ENV = {"PATH": "/usr/bin:/bin"}


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripsage_sync.api.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_ENV, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The command refused with exit 2 and one stderr line holding every needle."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = lines
    assert line.startswith("tripsage-sync: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not a database, " * 400)
    return path


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _run("serve", "--port", port, "--db", str(tmp_path / "t.db"), cwd=tmp_path)
    _one_line(result, f"127.0.0.1:{port}", "in use", "--port")


def test_serve_with_the_database_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "t.db"
    result = _run("serve", "--port", str(free_port()), "--db", str(missing), cwd=tmp_path)
    _one_line(result, str(tmp_path / "nope"), "does not exist", "--db")
    assert not (tmp_path / "nope").exists()


def test_serve_where_the_database_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    parent = tmp_path / "a-file"
    parent.write_text("x")
    result = _run("serve", "--port", str(free_port()), "--db", "/proc/t.db", cwd=tmp_path)
    _one_line(result, "/proc/t.db", "writable directory")
    result = _run("serve", "--db", str(tmp_path), cwd=tmp_path)
    _one_line(result, str(tmp_path), "is a directory")


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["token", "--user", "a"]])
def test_a_corrupt_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    bad = _corrupt(tmp_path / "bad.db")
    result = _run(*command, "--db", str(bad), cwd=tmp_path)
    _one_line(result, str(bad), "damaged", "backup")


def test_db_tools_on_a_corrupt_database_or_into_a_missing_directory_are_one_line(
    tmp_path: Path,
) -> None:
    bad = _corrupt(tmp_path / "bad.db")
    _one_line(_run("db", "compact", "--db", str(bad), cwd=tmp_path), str(bad), "damaged")
    _one_line(_run("db", "backup", "b.db", "--db", str(bad), cwd=tmp_path), "damaged")
    good = tmp_path / "good.db"
    assert _run("token", "--user", "a", "--db", str(good), "--create", cwd=tmp_path).returncode == 0
    result = _run("db", "backup", str(tmp_path / "gone" / "b.db"), "--db", str(good), cwd=tmp_path)
    _one_line(result, str(tmp_path / "gone"), "does not exist")


def test_a_bad_log_level_is_one_line(tmp_path: Path) -> None:
    result = _run("serve", cwd=tmp_path, env={"TRIPSAGE_LOG_LEVEL": "loud"})
    _one_line(result, "TRIPSAGE_LOG_LEVEL", "debug, info", "'loud'")
    assert not (tmp_path / "tripsage.db").exists()  # refused before anything was opened


def test_a_mistyped_variable_is_named_with_the_setting_it_resembles(tmp_path: Path) -> None:
    result = _run(
        "serve", "--db", str(tmp_path), cwd=tmp_path, env={"TRIPSAGE_PROT": "9000"}
    )  # stops at the directory: the warning came first
    warning, refusal = result.stderr.strip().splitlines()
    assert warning == (
        "tripsage-sync: warning: TRIPSAGE_PROT is not a setting and is ignored"
        " (did you mean TRIPSAGE_PORT?)"
    )
    assert "is a directory" in refusal


@pytest.mark.parametrize(
    "command",
    [
        ["token", "--user", "a"],
        ["broadcast", "hello", "--server", "http://127.0.0.1:9"],
        ["maintenance", "--in", "60", "--message", "m", "--server", "http://127.0.0.1:9"],
    ],
)
def test_admin_commands_refuse_a_database_that_does_not_exist(
    tmp_path: Path, command: list[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run(*command, cwd=elsewhere)
    _one_line(result, str(elsewhere / "tripsage.db"), "--db", "--create")
    assert list(elsewhere.iterdir()) == []  # no new database with a new secret


def test_token_creates_a_database_only_when_asked(tmp_path: Path) -> None:
    result = _run("token", "--user", "a", "--create", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2  # a JWT
    with sqlite3.connect(tmp_path / "tripsage.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'jwt_secret'").fetchone()
    db.close()
    again = _run("token", "--user", "a", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_token_refuses_a_ttl_that_is_not_positive(tmp_path: Path) -> None:
    for ttl in ("-60", "0", "nan"):
        result = _run("token", "--user", "a", "--ttl", ttl, "--create", cwd=tmp_path)
        assert result.returncode == 2, result.stdout
        assert "--ttl" in result.stderr
        assert result.stdout == ""


def test_demo_sign_in_on_a_public_address_needs_an_explicit_flag(tmp_path: Path) -> None:
    port = str(free_port())
    refused = _run("serve", "--demo-agent", "--host", "0.0.0.0", "--port", port, cwd=tmp_path)
    _one_line(refused, "0.0.0.0", "anyone", "--dev-sign-in-anywhere")
    refused = _run(
        "serve", "--host", "0.0.0.0", "--port", port, cwd=tmp_path, env={"TRIPSAGE_DEV_MODE": "1"}
    )
    _one_line(refused, "0.0.0.0", "--dev-sign-in-anywhere")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tripsage_sync.api.cli", "serve", "--demo-agent"),
            *("--host", "0.0.0.0", "--port", port, "--dev-sign-in-anywhere"),
        ],
        cwd=tmp_path,
        env={**_ENV, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        first = server.stderr.readline()  # printed before the server starts
        assert first.startswith("tripsage-sync: warning: DEMO SIGN-IN IS OPEN ON 0.0.0.0"), first
    finally:
        server.kill()
        server.wait()
        assert server.stderr is not None
        server.stderr.close()


def test_watch_an_unreachable_server_fails_at_once_and_says_where(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    result = _run("watch", "t-1", "--token", "x", "--url", url, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "[connecting]" in lines
    assert lines[-1].startswith(f"tripsage-sync: cannot reach {url}/ws/"), lines
    assert "Traceback" not in result.stderr
