#!/usr/bin/env bash
# The README's two commands:
#   sudo tools/setup.sh demo   install dependencies, build, run tools/demo.sh
#   sudo tools/setup.sh test   install dependencies, build, run tools/run-tests.sh
# (as root, without sudo, works too.)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo

case ${1:-} in
  demo)
    "$repo/tools/install-deps.sh" --minimal
    build=${BUILD:-$repo/build}
    echo "== build ($build)"
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    ninja -C "$build" -j "${JOBS:-2}" iscsi-mpio
    BUILD=$build exec "$repo/tools/demo.sh"
    ;;
  test)
    "$repo/tools/install-deps.sh"
    exec "$repo/tools/run-tests.sh"
    ;;
  *)
    sed -n '2,5{s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
    ;;
esac
