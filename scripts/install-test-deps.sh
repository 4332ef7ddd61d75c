#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (real servers, never fakes):
#   dovecot-imapd — the IMAP server tests/servers/dovecot.py starts on loopback;
#   chromium, chromium-driver — the headless browser tests/test_portal_browser.py drives.
# Idempotent: does nothing when all three are already on PATH. Fails loudly otherwise.
set -euo pipefail

if command -v dovecot >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install-test-deps: dovecot, chromium and chromedriver already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: not root and no sudo" >&2; exit 1; }
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends dovecot-imapd chromium chromium-driver

# The package starts a system-wide dovecot where an init system runs; the tests start
# their own instance in a temporary directory, so stop the system one if it is up.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
    $SUDO systemctl stop dovecot || true
fi

for tool in dovecot chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-test-deps: $tool still missing after install" >&2; exit 1; }
done
echo "install-test-deps: installed $(dovecot --version)"
