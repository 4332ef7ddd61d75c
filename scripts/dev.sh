#!/usr/bin/env bash
# The README's two set-up commands:
#   bash scripts/dev.sh run    install the gateway and run it (embedded database, console channel)
#   bash scripts/dev.sh test   install what the tests need (Debian + PyPI), lint and type-check
#                              (ruff, mypy, import-linter), then run the tests
# Works on a fresh Debian machine with Python 3.11; extra arguments go to run_bots.py / pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
            echo "dev.sh: installing python3-venv (Debian)" >&2
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV"
        fi
    fi
    # pip's chatter goes to a log; shown only when the install fails.
    if ! "$VENV/bin/python" -m pip install -q -e ".$1" >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        exit 1
    fi
}

case "${1:-}" in
    run)
        shift
        ensure_venv ""
        exec "$VENV/bin/python" run_bots.py "$@"
        ;;
    test)
        shift
        bash scripts/install-test-deps.sh
        ensure_venv "[test]"
        echo "dev.sh: ruff check . (lint, settings in pyproject.toml)" >&2
        "$VENV/bin/ruff" check .
        echo "dev.sh: mypy (type check of the files listed in pyproject.toml)" >&2
        "$VENV/bin/mypy"
        echo "dev.sh: lint-imports (the layer order in .importlinter, written in the README)" >&2
        "$VENV/bin/lint-imports" --no-cache
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash scripts/dev.sh run|test [args…]" >&2
        exit 2
        ;;
esac
