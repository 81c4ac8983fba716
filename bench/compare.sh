#!/usr/bin/env bash
# Compares berth with CNCF Distribution 2.8 on this machine.
#
# Installs Distribution (Debian's docker-registry) when it is missing, builds
# berth and berth-bench in release mode, starts both registries on loopback
# with fresh data directories, runs the standard workload set against both
# (alternating them), and writes the table, the chart and a description of
# the machine into bench/README.md between the compare markers.
#
# Settings (environment):
#   DURATION=10s  WARMUP=1s  REPEAT=3   length of each measurement
#   COMPARE_DIR=target/compare          data directories (use a real disk,
#                                       not tmpfs: berth needs O_DIRECT)
#   EXTRA_TARGETS="zot=http://127.0.0.1:5200 ..."  more registries to measure
#   WORKLOADS="push:size=1MiB ..."      replace the standard workload set
#   MIN_FREE_GIB=30                     free disk the run insists on
#   NO_README=1                         leave bench/README.md alone
#   BERTH_BIN=... BENCH_BIN=...         use these binaries, build nothing
#   BERTH_COMMIT=abc1234                name the build when not run in a git tree
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

duration="${DURATION:-10s}"
warmup="${WARMUP:-1s}"
repeat="${REPEAT:-3}"
work="${COMPARE_DIR:-$root/target/compare}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
berth_port=5000
dist_port=5100

# Pushes are bounded by a count, not a duration, so the disk they fill is
# known: about 1 GiB per push workload, repetition and target, plus the
# warm-up's. Reads and metadata calls store little and run for DURATION.
workloads=(
    "push:size=64MiB,conc=8,count=16"
    "push:size=1MiB,conc=16,count=1024"
    "pull:size=64MiB,conc=8"
    "pull:size=1MiB,conc=16"
    "manifest:op=get-digest,conc=64,repos=64"
    "manifest:op=head-tag,conc=64,repos=64"
    "image:layers=3,size=256KiB,shared=1,repos=64,conc=16,count=1536"
)
if [ -n "${WORKLOADS:-}" ]; then
    read -r -a workloads <<<"$WORKLOADS"
fi

say() { printf '==> %s\n' "$*" >&2; }

# 1. Distribution.
if [ ! -x /usr/bin/docker-registry ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker-registry is missing; run as root or apt-get install docker-registry" >&2
        exit 1
    fi
    say "installing docker-registry (CNCF Distribution)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
fi

# 2. Binaries.
berth="${BERTH_BIN:-$target_dir/release/berth}"
bench="${BENCH_BIN:-$target_dir/release/berth-bench}"
if [ -z "${BERTH_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
    say "building berth and berth-bench (release)"
    cargo build --release -p berth -p berth-bench
fi

# 3. Fresh data directories and the two servers, on ports nothing else
# holds (or the run would measure a stranger).
for port in "$berth_port" "$((berth_port + 1))" "$dist_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port is already in use; stop what listens there" >&2
        exit 1
    fi
done

# The registries keep every blob pushed; refuse to fill the disk.
mkdir -p "$work"
min_free_gib="${MIN_FREE_GIB:-30}"
free_gib="$(df -P -k "$work" | awk 'NR == 2 { print int($4 / 1048576) }')"
if [ "${free_gib:-0}" -lt "$min_free_gib" ]; then
    echo "only ${free_gib} GiB free under $work; the run needs about ${min_free_gib} GiB (MIN_FREE_GIB)" >&2
    exit 1
fi

case "$work" in
    "" | / | "$root" | "$HOME")
        echo "COMPARE_DIR=$work would be wiped; choose a directory of its own" >&2
        exit 1
        ;;
esac
rm -rf "$work"
mkdir -p "$work/berth" "$work/dist"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

say "starting berth on 127.0.0.1:$berth_port, data in $work/berth"
"$berth" serve --listen "127.0.0.1:$berth_port" \
    --admin-listen "127.0.0.1:$((berth_port + 1))" \
    --data-dir "$work/berth" >"$work/berth.log" 2>&1 &
pids+=("$!")

cat >"$work/dist.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/dist
http:
  addr: 127.0.0.1:$dist_port
EOF
say "starting Distribution on 127.0.0.1:$dist_port, data in $work/dist"
/usr/bin/docker-registry serve "$work/dist.yml" >"$work/dist.log" 2>&1 &
pids+=("$!")

wait_ready() {
    local port="$1" name="$2" pid="$3"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not start; its log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}
wait_ready "$berth_port" berth "${pids[0]}"
wait_ready "$dist_port" dist "${pids[1]}"

commit="${BERTH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
if [ -z "${BERTH_COMMIT:-}" ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit with uncommitted changes"
fi
dist_version="$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || echo unknown)"

# 4. The run. Load before it, so a reader can tell a busy machine.
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
targets=(--target "berth=http://127.0.0.1:$berth_port" --target "dist=http://127.0.0.1:$dist_port")
for extra in ${EXTRA_TARGETS:-}; do
    targets+=(--target "$extra")
done
args=()
for w in "${workloads[@]}"; do
    args+=(--workload "$w")
done

say "running ${#workloads[@]} workloads, $repeat x $duration each per target"
status=0
"$bench" run "${targets[@]}" "${args[@]}" \
    --duration "$duration" --warmup "$warmup" --repeat "$repeat" \
    --json bench/compare.json --svg bench/compare.svg \
    --markdown "$work/table.md" | tee "$work/report.txt" || status=$?

# 5. The machine, and the README section.
machine() {
    local cpu mem fs dev
    cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    mem="$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    fs="$(findmnt -n -T "$work" -o SOURCE,FSTYPE 2>/dev/null | tr -s ' ' || echo unknown)"
    dev="$(lsblk -n -d -o NAME,MODEL,SIZE,ROTA 2>/dev/null | tr -s ' ' | paste -sd ';' - || true)"
    echo "- berth: commit $commit; Distribution: $dist_version"
    echo "- CPU: $(nproc) logical CPUs, ${cpu:-unknown model}"
    echo "- Memory: $mem"
    echo "- Kernel: $(uname -r)"
    echo "- Data directories on: $fs"
    echo "- Disks (name model size rotational): ${dev:-unknown}"
    echo "- Load average (1, 5, 15 min) before the run: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Client and both servers share the machine; the cpu column is the"
    echo "  client's own use, in cores."
}

if [ -z "${NO_README:-}" ]; then
    section="$work/section.md"
    {
        echo "<!-- compare:start -->"
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/compare.sh\`"
        echo "(medians of $repeat runs after $warmup warm-up: pushes by count, the rest for $duration;"
        echo "berth is the first target, ratios are to it)."
        echo
        if [ "$status" != 0 ]; then
            echo '**This run had errors; see bench/compare.json.**'
            echo
        fi
        machine
        echo
        cat "$work/table.md"
        echo
        echo "![throughput and latency per target](compare.svg)"
        echo "<!-- compare:end -->"
    } >"$section"

    readme=bench/README.md
    if grep -q '<!-- compare:start -->' "$readme"; then
        awk -v section="$section" '
            /<!-- compare:start -->/ { while ((getline line < section) > 0) print line; skip = 1; next }
            /<!-- compare:end -->/ { skip = 0; next }
            !skip { print }
        ' "$readme" >"$readme.new"
        mv "$readme.new" "$readme"
    else
        { echo; cat "$section"; } >>"$readme"
    fi
    say "wrote the results into $readme"
fi

exit "$status"
