#!/usr/bin/env bash
# The Debian packages the test suite drives, installed when missing (make test runs this first):
# - chromium: the console's browser tests (tests/browser/); Playwright drives it through
#   executable_path, as it cannot download browser builds of its own here;
# - redis-server (7, built with TLS) and openssl: the suite's private Redis, and the production-install
#   test's rediss:// server with a self-signed certificate (tests/test_production.py).
# Idempotent and silent when all are there; needs root and Debian's mirrors otherwise.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-system-packages: missing ${missing[*]}; install them with apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "install-system-packages: installing ${missing[*]} for the tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
test -x /usr/bin/chromium && command -v redis-server >/dev/null && command -v openssl >/dev/null
