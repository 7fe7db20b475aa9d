#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/browser/): Playwright drives it through
# executable_path, as it cannot download browser builds of its own here. Idempotent and
# silent when /usr/bin/chromium is already there; needs root and Debian's mirrors otherwise.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-chromium: $CHROMIUM is missing; install Debian's chromium package (apt-get install chromium)" >&2
    exit 1
fi
echo "install-chromium: installing Debian's chromium for the browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x "$CHROMIUM"
