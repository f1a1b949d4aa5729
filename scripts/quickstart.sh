#!/usr/bin/env bash
# Quick start: build Berth, start berthd, get a busybox image and run a container through the daemon, end to end.
#
#   sudo bash scripts/quickstart.sh
#
# On a fresh Debian 12 machine (as root) it installs what the build and the demo need, builds every binary in
# release mode, starts berthd on /run/berth/berth.sock (unless one already answers there) and gets the `busybox`
# image: online it pulls it from Docker Hub; offline it builds a small image from the distribution's static busybox
# and imports it. Then `berth run --rm busybox` shows the container's hostname (its short id), that its shell is
# PID 1, and its own network namespace with an address on the default bridge network (berth0), beside the host's. berthd keeps running afterwards for you to try more
# (`berth run -it busybox sh`, `berth ps -a`); stop it with `kill $(cat /run/berth/berthd.pid)`.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root_dir/scripts/lib.sh"

while (($#)); do
    case $1 in
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) berth_die "unknown argument $1 (see --help)" ;;
    esac
done

berth_require_root scripts/quickstart.sh
# The build (a linker, static libc, libseccomp) and the offline image; the benchmark tools are left to test.sh.
berth_ensure_packages build-essential pkg-config libseccomp-dev busybox-static iproute2

berth_ensure_cargo
berth_log "building Berth (release)"
(cd "$root_dir" && cargo build --release --workspace --bins)
bin=$(berth_target_dir release)
berth="$bin/berth"
sock=/run/berth/berth.sock
export BERTH_HOST="unix://$sock"

if ! "$berth" version >/dev/null 2>&1; then
    berth_log "starting berthd (log: /var/log/berthd.log)"
    mkdir -p /run/berth
    nohup "$bin/berthd" >>/var/log/berthd.log 2>&1 </dev/null &
    for _ in $(seq 100); do
        "$berth" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$berth" version >/dev/null 2>&1 || berth_die "berthd did not start; see /var/log/berthd.log"
fi

if ! "$berth" image inspect busybox >/dev/null 2>&1; then
    berth_log "pulling busybox"
    if ! timeout 60 "$berth" pull busybox; then
        berth_log "no registry reachable: building busybox from the distribution's busybox-static"
        rootfs="$(berth_cache_dir)/rootfs/busybox"
        berth_busybox_rootfs "$rootfs"
        tar -C "$rootfs" --exclude=.berth-rootfs -c . | "$berth" import - busybox:latest >/dev/null
    fi
fi

# shellcheck disable=SC2016 # the $(...) and $$ are for the container's shell
demo='echo "hostname: $(hostname)"; echo "pid: $$"; ps; ls -l /proc/self/ns/net; ip -4 addr show eth0; ip route'
echo
echo "host:      hostname $(hostname), net namespace $(readlink /proc/self/ns/net)"
echo "container: berth run --rm busybox sh -c '...'"
echo
"$berth" run --rm busybox sh -c "$demo" </dev/null
echo
echo "The container had its own hostname (its short id), its shell was PID 1, its net namespace differs from the"
echo "host's, and it had its own address on berthd's default bridge network (berth0) with a default route."
echo "berthd is still running: try 'BERTH_HOST=$BERTH_HOST $berth run -it --rm busybox sh'."
