#!/bin/sh
# deps.sh — installs what Agent Harbor needs on Debian 12, and nothing when all is present.
# Idempotent and quiet: it only speaks (and only runs apt-get update) when a package is missing.
# Works as root or through sudo. Web-side tools (OpenAPI lint, Swagger UI, playwright-core) come
# from npm, pinned by package-lock.json, installed into ./node_modules when it is out of date.
# wrk is for the benchmarks (bench/soak.py, auth.py, front.py), not the tests.
set -eu

PACKAGES="gcc make cmake pkg-config git ca-certificates
libmicrohttpd-dev libjansson-dev libsqlite3-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
libgit2-dev libpcre2-dev zlib1g-dev python3 python3-jsonschema sqlite3 curl procps asciinema
postgresql libpq-dev
prometheus clang libclang-rt-14-dev libsystemd-dev
bubblewrap
podman runc catatonit slirp4netns busybox-static
nodejs npm chromium
librhonabwy-dev glewlwyd python3-cryptography
libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev gnutls-bin
openssh-server openssh-client socat
wrk"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# Node may come from outside Debian (e.g. a preinstalled newer release): accept a working one.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(printf '%s\n' $missing | grep -v -x -e nodejs -e npm | tr '\n' ' ')
fi
missing=$(echo $missing)

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "deps.sh: installing $missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# npm packages, only when package.json exists and node_modules does not match the lock file.
top=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$top/package-lock.json" ]; then
    stamp="$top/node_modules/.deps-stamp"
    want=$(sha256sum "$top/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "deps.sh: installing npm packages" >&2
        (cd "$top" && npm ci --silent --no-audit --no-fund >/dev/null)
        echo "$want" > "$stamp"
    fi
fi
