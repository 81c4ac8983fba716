#!/usr/bin/env bash
# Runs berth's whole test suite on a fresh machine.
#
# Installs what the tests need (skopeo for the real-client tests) when it is
# missing and we are root, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v skopeo >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null
    else
        echo "skopeo is missing; install it (apt-get install skopeo)" >&2
        exit 1
    fi
fi

# The bench crate's tests drive the berth binary this build makes; make a
# missing binary a failure rather than a skip.
export BERTH_BENCH_REQUIRE_BERTH=1
cargo test --workspace --release --no-fail-fast
