#!/usr/bin/env bash
# Idle memory of the daemons: berthd beside dockerd + containerd (the reference, ~115 MB on this machine kind).
#
#   sudo bash bench/daemon.sh [--no-build] [--settle SECONDS]
#
# Each daemon is started privately (its own data root, sockets and pid file in a temporary directory; dockerd with
# no bridge, iptables or forwarding, on a private containerd; berthd with its default network set-up — the bridge
# berth0, its nftables table and the DNS listener — inside a throwaway network namespace, `nsenter --net`, so the
# host's network is not touched), answers one `version` request, is left idle for
# --settle seconds (default 5), and then its resident set is read from /proc/<pid>/status (VmRSS; for docker the sum
# of dockerd and containerd). berthd is also read after a second round of requests (`info`, `images`, `system df`).
# Prints a table and writes it to bench/results/daemon-<date>.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build=1
settle=5
bench_args --no-build:build=0 --settle=settle -- "$@"
berth_require_root bench/daemon.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}"
if ((build)); then
    berth_ensure_cargo
    (cd "$root_dir" && cargo build --release -p berthd -p berth)
fi
bin=$(berth_target_dir release)

work=$(mktemp -d /tmp/berth-bench-daemon.XXXXXX)
netns=berth-bench-daemon-$$
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$netns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# berthd
ip netns add "$netns"
ip -n "$netns" link set lo up
nsenter --net="/run/netns/$netns" -- "$bin/berthd" --data-root "$work/berth" -H "unix://$work/berth.sock" \
    --pidfile "$work/berthd.pid" --exec-root "$work/berth-exec" >"$work/berthd.log" 2>&1 &
berthd=$!
pids+=("$berthd")
berth=("$bin/berth" -H "unix://$work/berth.sock")
wait_for 10 "${berth[@]}" version || berth_die "berthd did not start: $(cat "$work/berthd.log")"
sleep "$settle"
berth_idle=$(rss_kb "$berthd")
"${berth[@]}" info >/dev/null
"${berth[@]}" images >/dev/null
"${berth[@]}" system df >/dev/null
sleep 1
berth_used=$(rss_kb "$berthd")

# dockerd on a private containerd
mkdir -p "$work/ctd"
printf 'version = 2\nroot = "%s/ctd/root"\nstate = "%s/ctd/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/ctd/opt"\n' \
    "$work" "$work" "$work" "$work" >"$work/containerd.toml"
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd=$!
pids+=("$containerd")
echo "{\"deprecated-key-path\": \"$work/key.json\"}" >"$work/daemon.json"
dockerd --config-file "$work/daemon.json" --data-root "$work/docker" --exec-root "$work/dexec" \
    --pidfile "$work/docker.pid" -H "unix://$work/docker.sock" --containerd "$work/c.sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    >"$work/dockerd.log" 2>&1 &
dockerd=$!
pids+=("$dockerd")
wait_for 10 docker -H "unix://$work/docker.sock" version || berth_die "dockerd did not start: $(tail -5 "$work/dockerd.log")"
sleep "$settle"
docker_idle=$(($(rss_kb "$dockerd") + $(rss_kb "$containerd")))

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$root_dir/bench/results"
out="$root_dir/bench/results/daemon-$stamp.md"
{
    echo "### Daemon memory, $(date -u +%Y-%m-%d)"
    echo
    echo "Kernel \`$(uname -r)\`; VmRSS after ${settle} s idle (\`bench/daemon.sh\`)."
    echo
    echo "| daemon | idle RSS | after info, images, system df |"
    echo "|---|---|---|"
    echo "| berthd | $(mb "$berth_idle") | $(mb "$berth_used") |"
    echo "| dockerd + containerd | $(mb "$docker_idle") | |"
    echo "| **berthd / docker** | $(ratio "$berth_idle" "$docker_idle") | |"
} >"$out"
echo
cat "$out"
berth_log "written to ${out#"$root_dir"/}"
