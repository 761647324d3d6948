#!/usr/bin/env bash
# Debian's Prometheus server and promtool, for the end-to-end metrics test (tests/e2e) and the
# alert-rule check (tests/deploy). Installed with apt, the system's own client; the package's
# service is NOT started (a policy-rc.d forbids it for the duration of the install): the tests run
# their own server on loopback with their own configuration.
#
# CI runs `make test` as root on a fresh machine, so this runs apt-get update first. Without root,
# it uses sudo when there is one.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus: $(prometheus --version 2>&1 | head -n1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup-prometheus: need root (or sudo) to apt-get install prometheus" >&2; exit 1; }
    SUDO="sudo"
fi

POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
echo "prometheus: $(prometheus --version 2>&1 | head -n1)"
