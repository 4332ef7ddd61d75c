"""The deployment files agree with the settings the gateway actually reads."""
from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from settings import Settings
from store.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def _env_example_names() -> set[str]:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def test_every_setting_is_documented_in_env_example():
    expected = {name.upper() for name in Settings.model_fields}
    assert _env_example_names() == expected


def test_docker_compose_has_mongo_with_volume_and_healthcheck():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mongo = compose["services"]["mongo"]
    assert mongo["image"].startswith("mongo:")
    assert "healthcheck" in mongo
    volume = mongo["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_docker_compose_app_is_built_here_and_reads_known_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    app = compose["services"]["app"]
    assert app["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert app["depends_on"]["mongo"]["condition"] == "service_healthy"
    known = {name.upper() for name in Settings.model_fields}
    assert set(app["environment"]) <= known
    assert "MONGODB_URI" in app["environment"]


def test_ci_runs_the_readme_test_command():
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines()
                if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert ci_lines[-1] in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def start_gateway(**env: str) -> subprocess.CompletedProcess[str]:
    """`run_bots.py` as an operator starts it: the embedded database, no platform credentials."""
    base = {"PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING", "CONSOLE": "false",
            "AGENCY_TOKEN_SECRET": "deployment-test", "EMBEDDED_DB_PORT": str(free_port())}
    return subprocess.run([sys.executable, "run_bots.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, **env}, stdin=subprocess.DEVNULL, check=False)


def test_a_taken_web_port_ends_the_start_with_one_line(taken_port: int, tmp_path: Path) -> None:
    db_port = free_port()
    done = start_gateway(WEB_PORT=str(taken_port), EMBEDDED_DB_PATH=str(tmp_path / "db"),
                         EMBEDDED_DB_PORT=str(db_port))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: web port {taken_port} on 127.0.0.1 is already in use (set WEB_PORT)"
    with socket.socket() as again:  # the embedded database it had started is stopped: a retry can start
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its closed connections may linger
        again.bind(("127.0.0.1", db_port))


def test_a_data_directory_that_cannot_be_made_ends_the_start_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory", encoding="utf-8")
    path = tmp_path / "a-file" / "db"
    done = start_gateway(WEB_PORT=str(free_port()), EMBEDDED_DB_PATH=str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: cannot create database directory {path}: Not a directory"
