#!/usr/bin/env bash
# Quick start: build berth-runtime and run a container with it, end to end.
#
#   sudo bash scripts/quickstart.sh [--runtime PATH]
#
# On a fresh Debian 12 machine (as root) it installs what the build and the demo need, builds berth-runtime in
# release mode, makes a busybox OCI bundle in the cache directory (outside the clone) and runs a container from it
# that shows its own hostname, that its shell is PID 1, and its own network namespace (only `lo`), beside the host's.
# The container is deleted on any exit.
#
# --runtime PATH runs the same demo with another OCI runtime (runc, crun) instead of building berth-runtime: handy
# for comparing what they print.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root_dir/scripts/lib.sh"

runtime=
while (($#)); do
    case $1 in
    --runtime) runtime=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) berth_die "unknown argument $1 (see --help)" ;;
    esac
done

berth_require_root scripts/quickstart.sh
# The build (a linker, static libc, libseccomp) and the demo bundle; the benchmark tools are left to test.sh.
berth_ensure_packages build-essential pkg-config libseccomp-dev busybox-static jq iproute2

if [[ -z $runtime ]]; then
    berth_ensure_cargo
    berth_log "building berth-runtime (release)"
    (cd "$root_dir" && cargo build --release -p berth-runtime)
    runtime="$(berth_target_dir release)/berth-runtime"
fi
[[ -x $runtime ]] || runtime=$(command -v "$runtime") || berth_die "no runtime at $runtime"

# The image. Today the rootfs is made from the distribution's static busybox, which works offline.
# TODO(berthd): once the daemon and berth-image exist, pull `busybox` from a registry into the content store and
# unpack it here instead (`berth pull busybox`), and keep this offline path as the fallback.
bundle="$(berth_cache_dir)/bundles/busybox"
berth_log "making the busybox bundle in $bundle"
berth_busybox_rootfs "$bundle/rootfs"
rm -f "$bundle/config.json"
(cd "$bundle" && "$runtime" spec)
# shellcheck disable=SC2016 # the $(...) and $$ are for the container's shell
demo='echo "hostname: $(hostname)"; echo "pid: $$"; ps; ls -l /proc/self/ns/net; ip link 2>/dev/null || cat /proc/net/dev'
jq --arg demo "$demo" \
    '.process.terminal = false | .process.args = ["sh", "-c", $demo] | .hostname = "berth-demo"' \
    "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

id="berth-demo-$(date +%s)-$$"
cleanup() { "$runtime" delete --force "$id" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo
echo "host:      hostname $(hostname), net namespace $(readlink /proc/self/ns/net)"
echo "container: $runtime run --bundle $bundle $id"
echo
"$runtime" run --bundle "$bundle" "$id" </dev/null
echo
echo "The container had its own hostname, its shell was PID 1, and its net namespace (above) differs from the host's."
