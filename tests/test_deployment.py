"""The deployment files agree with the settings the gateway actually reads."""
from __future__ import annotations

from pathlib import Path

import yaml

from settings import Settings

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
