"""The installed distribution is one import package, ``tripsage_sync``.

The repository keeps ``sync/``, ``api/`` and ``storage/`` at its root; pyproject's
``package-dir`` maps them to ``tripsage_sync.sync`` and so on. Nothing may use the
bare names (they are other distributions' on PyPI, and a user's ``sync.py`` in the
working directory would shadow them).
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tripsage_sync.api
import tripsage_sync.api.web.feature
import tripsage_sync.sync

ROOT = Path(__file__).resolve().parent.parent
BARE = {"sync", "api", "storage", "examples"}
# Folders with our Python code or scripts; .ci/mypy/tripsage_sync links back to ROOT.
SCANNED = ["sync", "api", "storage", "tests", "bench", "docs", ".ci"]
SKIP_DIRS = {"node_modules", "__pycache__", "mypy"}
# `python -m api.cli`, "api.cli:main", `from api.cli import main` in scripts and docs.
_NAME = r"(sync|api|storage|examples)"
BARE_TEXT = re.compile(
    rf"^\s*(from|import) {_NAME}[. ]|-m {_NAME}\b|[\"']{_NAME}\.(?!py\b|db\b)[a-z_.:]+[\"']"
)


def files(suffixes: tuple[str, ...]) -> Iterator[Path]:
    yield from (ROOT / name for name in ("pyproject.toml", "README.md"))
    for folder in SCANNED:
        for dirpath, dirnames, filenames in os.walk(ROOT / folder):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            for filename in filenames:
                path = Path(dirpath, filename)
                if path.suffix in suffixes or (folder == ".ci" and not path.suffix):
                    yield path


def bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in BARE]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in BARE:
                found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append("." * node.level + (node.module or ""))
    return [f"{path.relative_to(ROOT)}:{name}" for name in found]


def test_no_module_imports_the_bare_names() -> None:
    bad = [hit for path in files((".py",)) if path.suffix == ".py" for hit in bare_imports(path)]
    assert not bad, bad


def test_no_script_or_doc_names_the_bare_modules() -> None:
    bad = []
    for path in files((".py", ".sh", ".md", ".toml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if BARE_TEXT.search(line) and path != Path(__file__).resolve():
                bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_editable_install_resolves_to_the_repository_folders() -> None:
    # Under `pip install -e .` the mapped packages are these folders, static files too.
    if "site-packages" in str(tripsage_sync.api.__file__):
        pytest.skip("tripsage_sync is installed from a wheel here")
    assert Path(tripsage_sync.sync.__file__ or "").parent == ROOT / "sync"
    assert Path(tripsage_sync.api.__file__ or "").parent == ROOT / "api"
    assert tripsage_sync.api.web.feature.WEB_DIR == ROOT / "api" / "web"
    assert (tripsage_sync.api.web.feature.WEB_DIR / "index.html").is_file()


def test_one_version_string() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tripsage_sync", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"tripsage-sync {tripsage_sync.api.__version__}"
    from importlib.metadata import version

    assert version("tripsage-sync") == tripsage_sync.api.__version__


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools comes with the test extras (no index needed).
    options = ["-q", "--no-deps", "--no-build-isolation", f"--wheel-dir={out}"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *options, str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=out,
    )
    (built,) = out.glob("tripsage_sync-*.whl")
    return built


def test_wheel_holds_only_tripsage_sync(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = f"tripsage_sync-{tripsage_sync.api.__version__}.dist-info"
    assert tops == {"tripsage_sync", dist_info}
    for needed in (
        "tripsage_sync/__main__.py",
        "tripsage_sync/api/cli.py",
        "tripsage_sync/api/chat/demo_agent.py",
        "tripsage_sync/api/web/feature.py",
        "tripsage_sync/client/__init__.py",
        "tripsage_sync/api/web/index.html",
        "tripsage_sync/api/web/app.js",
        "tripsage_sync/api/web/style.css",
        "tripsage_sync/sync/session/core.py",
        "tripsage_sync/storage/sqlite.py",
    ):
        assert needed in names
    assert not [n for n in names if "/_root/" in n or "examples" in n or "/tests/" in n]
    # Every module of the repository's packages is in the wheel (a new subpackage must be
    # listed in pyproject.toml's packages).
    for folder in ("sync", "api", "storage", "client"):
        for module in (ROOT / folder).rglob("*.py"):
            relative = module.relative_to(ROOT).as_posix()
            if not relative.startswith("api/_root/"):
                assert f"tripsage_sync/{relative}" in names, relative


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_wheel_installs_beside_pypi_sync(wheel: Path, tmp_path: Path) -> None:
    """``pip install sync`` (PyPI's, which ships a top-level ``sync``) breaks nothing."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Our dependencies and PyPI's `sync` (an sdist) come from the index (pip's cache).
    subprocess.run([*pip, str(wheel), "sync"], check=True, capture_output=True, timeout=600)
    assert (env_dir / "lib").glob("python3*/site-packages/sync/__init__.py")
    check = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # A user's own sync.py (and api.py) in the working directory shadow nothing of ours.
    work = tmp_path / "work"
    work.mkdir()
    (work / "sync.py").write_text("raise SystemExit('the user sync.py was imported')\n")
    (work / "api.py").write_text("raise SystemExit('the user api.py was imported')\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TRIPSAGE_JWT_SECRET": "s" * 48}
    version = subprocess.run(
        [str(bin_dir / "tripsage-sync"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=work,
        env=env,
        check=True,
    )
    assert version.stdout.strip() == f"tripsage-sync {tripsage_sync.api.__version__}"
    port = free_port()
    serve = ["serve", "--port", str(port), "--db", str(tmp_path / "t.db")]
    server = subprocess.Popen(
        [str(bin_dir / "python"), "-m", "tripsage_sync", *serve],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", server)
        assert health["version"] == tripsage_sync.api.__version__
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert b"Traceback" not in output, output.decode(errors="replace")


def wait_for_health(base: str, server: subprocess.Popen[bytes]) -> dict[str, object]:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else b""
            raise AssertionError(f"server exited: {output.decode(errors='replace')}")
        try:
            response = httpx.get(base + "/health", timeout=1)
        except httpx.TransportError:
            # Polling a process start (the server has no other readiness signal).
            time.sleep(0.05)
            continue
        body: dict[str, object] = response.json()
        return body
    raise AssertionError("no /health answer in 60 s")


def _quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_the_quickstart_has_two_commands() -> None:
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands)
    assert commands[1] == "bash .ci/run"


@pytest.mark.slow
@pytest.mark.skipif(
    not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")),
    reason="no externally managed system Python (Debian, Ubuntu) on this machine",
)
def test_the_quickstart_serves_on_the_externally_managed_system_python(tmp_path: Path) -> None:
    """The first command, as written, from a copy of the sources, with Debian's python3
    first on PATH: it installs, then serves (``GET /health``) until stopped."""
    command = _quickstart_commands()[0]
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (clone / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("sync", "api", "storage", "client"):
        subprocess.run(
            ["cp", "-r", str(ROOT / folder), str(clone / folder)], check=True, timeout=60
        )
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TRIPSAGE_PORT": str(port)}
    server = subprocess.Popen(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600  # the install comes first (from pip's cache)
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling an install and a process start, not an event
        else:
            pytest.fail("the Quickstart's server did not answer /health")
        assert (clone / "tripsage.db").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
