#!/usr/bin/env bash
# Runs berth's whole test suite on a fresh machine.
#
# Installs what the tests need when it is missing and we are root: skopeo
# (the real-client tests), docker-registry (berth-bench's tests against
# CNCF Distribution) and systemd (systemd-analyze for the unit file). Then
# runs every test in the workspace, with those tools required rather than
# skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        # NOTE: a policy-rc.d keeps the packages' services from starting
        # (docker-registry's would take port 5000).
        own_policy=no
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            own_policy=yes
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        if [ "$own_policy" = yes ]; then
            rm -f /usr/sbin/policy-rc.d
        fi
    else
        echo "missing: ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

# The bench crate's tests drive the berth binary this build makes; make a
# missing binary a failure rather than a skip, and likewise the tools above.
export BERTH_BENCH_REQUIRE_BERTH=1
export BERTH_REQUIRE_TOOLS=1
cargo test --workspace --release --no-fail-fast
