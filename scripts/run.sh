#!/bin/sh
# run.sh — installs what is missing, builds, and runs `ah webui` on the embedded SQLite default
# (http://127.0.0.1:8080). Extra arguments go to `ah webui` (e.g. --port 9000).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$top/build" -j"$(nproc)" >/dev/null
exec "$top/build/ah" webui "$@"
