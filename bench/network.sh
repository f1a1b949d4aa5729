#!/usr/bin/env bash
# The default-network start of whole engines, side by side in one run: Berth (berthd + berth-monitor) beside docker
# and podman, every engine on its own default bridge network.
#
#   sudo bash bench/network.sh [--engines berth,docker,podman] [--runs 30] [--warmup 5] [--no-build]
#
# Measured: `<engine> run --rm busybox:bench true` with no network flag, so each engine puts the container on its
# default bridge network:
#   berth   berthd's `bridge` network: bridge berth0, a veth per container, address from berthd's IPAM, NAT with
#           nftables (table `ip berth`)
#   docker  dockerd's `bridge` network: bridge docker0, iptables (NAT, DOCKER chains, forwarding on), the userland
#           proxy on (its default; used only by published ports)
#   podman  podman's default network `podman` with the network backend `podman info` reports (netavark if installed,
#           else CNI: bridge cni-podman0, host-local IPAM, the bridge/portmap/firewall/tuning plugins)
# plus a reference row, `berth run --rm --network none busybox:bench true` on the same berthd (no network set-up).
# All rows are one hyperfine invocation (`hyperfine -N`, --warmup runs then --runs timed runs of each); reported are
# the medians (and mean ± sd), the ratios berth/docker and berth/podman, and issue 6's goal: berth at most a fifth
# of docker's time.
#
# Isolation: the host's network is not touched. Each engine gets a throwaway network namespace made here
# (`ip netns add berth-bench-<pid>-<engine>`, loopback up) and its daemons and every client command (the timed ones
# included, for every engine alike) are started through `nsenter --net=/run/netns/<ns> --`, which changes only the
# network namespace (not `ip netns exec`, whose private mount namespace would hide the daemons' mounts from each
# other and from the clean-up). The bridges, the iptables/nftables rules and net.ipv4.ip_forward are therefore the
# namespace's and die with it; one namespace per engine, so that no engine sees another's bridge, routes or rules
# (as on a host with only that engine). No traffic leaves the namespaces: the containers run `true`. Before timing,
# each engine must show that the container has an interface besides lo (4 lines in /proc/net/dev) and a default
# route, and that its bridge and a masquerade rule exist in its namespace.
#
# Every engine is private and left clean (containers removed, daemons stopped, no mount, cgroup or namespace left):
#   berth   the release build (`cargo build --release --workspace`, unless --no-build), a berthd with default network
#           flags (default bridge berth0) and its own socket, data root, exec root, config file and cgroup parent
#           under a temporary directory
#   docker  Debian's dockerd (20.10, its own CLI /usr/bin/docker) with its own data root, exec root, socket and
#           cgroup parent, on a private containerd (config, root, state, sockets in the temporary directory), with its
#           default bridge, iptables, ip-forward, ip-masq and userland proxy; runc through containerd-shim-runc-v2
#   podman  podman 4.3 with its own --root, --runroot and --tmpdir, overlay storage, crun, cgroupfs, file events, a
#           private containers.conf (no default ulimits: CAP_SYS_RESOURCE is missing from this VM's bounding set;
#           network_config_dir in the temporary directory, so its default network is the built-in one)
# The image is made offline from the distribution's static busybox (busybox-static): a rootfs tar imported into
# every engine (`berth import`, `docker import`, `podman import`) as busybox:bench.
# crun 1.8.1 refuses this VM's hybrid cgroup layout unless hugetlb is a v1 hierarchy: the script mounts it for the
# run if podman is benchmarked and it is missing (disabling hugetlb in the cgroup2 root's subtree_control first if
# something enabled it there), and undoes both at the end (as bench/run.sh).
#
# Prints the results and writes them to bench/results/network-<date>.txt.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh disable=SC1091 # followed with shellcheck -x
source "$root_dir/scripts/lib.sh"

engines=berth,docker,podman
runs=30
warmup=5
build=1
while (($#)); do
    case $1 in
    --engines) engines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) berth_die "unknown argument $1 (see --help)" ;;
    esac
done
IFS=, read -r -a engine_list <<<"$engines"
((${#engine_list[@]})) || berth_die "--engines names no engine"
for e in "${engine_list[@]}"; do
    case $e in berth | docker | podman) ;; *) berth_die "unknown engine $e (known: berth, docker, podman)" ;; esac
done
has_engine() { [[ ,$engines, == *,$1,* ]]; }
[[ $runs =~ ^[0-9]+$ && $warmup =~ ^[0-9]+$ ]] || berth_die "--runs and --warmup take numbers"
((runs >= 2)) || berth_die "--runs must be at least 2"
# The timed rows: every engine on its default network, and berth on --network none as the reference.
# berth-none comes right after berth, so that the two run next to each other.
rows=()
for e in "${engine_list[@]}"; do
    rows+=("$e")
    if [[ $e == berth ]]; then rows+=(berth-none); fi
done

berth_require_root bench/network.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}"
bin=$(berth_target_dir release)
if has_engine berth; then
    if ((build)); then
        berth_ensure_cargo
        berth_log "building the workspace (release)"
        (cd "$root_dir" && cargo build --release --workspace)
    fi
    for b in berthd berth berth-runtime berth-monitor berth-init; do
        [[ -x $bin/$b ]] || berth_die "$bin/$b does not exist (build the release workspace)"
    done
fi

# Short paths: unix socket paths (berth's <exec-root>/c/<64 hex>/m.sock) must stay under 108 bytes.
work=$(mktemp -d /tmp/bb-net.XXXXXX)
chmod 755 "$work"
tag="bench-net-${work##*.}"
tag=${tag,,}
cg_parent="/$tag"
ns_prefix="berth-bench-$$"
image=busybox:bench
export BERTH_CONFIG="$work/berth-config" DOCKER_CONFIG="$work/docker-config" CONTAINERS_CONF="$work/containers.conf"
unset DOCKER_HOST DOCKER_CONTEXT BERTH_HOST CONTAINER_HOST
mkdir -p "$DOCKER_CONFIG" # podman reads it too (registry credentials), and wants the file to exist
echo '{}' >"$DOCKER_CONFIG/config.json"

declare -A daemon_pid=()   # berthd, dockerd, containerd
declare -A stopped=()      # engine -> 1 once it was stopped and cleaned
declare -A cleanup_note=() # engine -> what the clean-up check found
declare -A made_ns=()      # engine -> 1 once its namespace exists
mounted_hugetlb=0
disabled_v2_hugetlb=0

ns_of() { echo "$ns_prefix-$1"; }
# in_ns ENGINE: the command prefix that runs a program in the engine's network namespace (and nothing else).
in_ns() { in_ns=(nsenter "--net=/run/netns/$(ns_of "$1")" --); }
cli_of() {
    in_ns "$1"
    case $1 in
    berth) cli=("${in_ns[@]}" "$bin/berth" -H "unix://$work/berth.sock") ;;
    docker) cli=("${in_ns[@]}" /usr/bin/docker -H "unix://$work/docker.sock") ;;
    podman) cli=("${in_ns[@]}" podman --root "$work/podman/root" --runroot "$work/podman/run"
        --tmpdir "$work/podman/tmp" --storage-driver overlay --runtime crun --cgroup-manager cgroupfs
        --events-backend file) ;;
    esac
}
# Extra `run` flags: podman has no daemon-wide cgroup parent.
run_flags_of() {
    case $1 in
    podman) run_flags=(--cgroup-parent "$cg_parent-podman") ;;
    *) run_flags=() ;;
    esac
}
# row_cmd ROW: the timed command of a row, as one string for hyperfine -N (no path here contains a space).
row_cmd() {
    local e=${1%-none}
    run_flags_of "$e"
    [[ $1 == *-none ]] && run_flags+=(--network none)
    cli_of "$e"
    echo "${cli[*]} run --rm ${run_flags[*]} $image true" | tr -s ' '
}

# --- processes, mounts, cgroups (as bench/run.sh) -----------------------------------------------------------------

# pids_of COMM NEEDLE: pids of the processes whose comm is COMM and whose command line contains NEEDLE.
pids_of() {
    local d comm args
    for d in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$d/comm" || continue
        [[ $comm == "$1" ]] || continue
        mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
        [[ "${args[*]}" == *"$2"* ]] && echo "${d#/proc/}"
    done
    return 0
}
# per_container_pids ENGINE: the engine's per-container processes (monitors, shims, conmons), one pid a line.
per_container_pids() {
    case $1 in
    berth) pids_of berth-monitor "$work/berth/exec" ;;
    docker) pids_of containerd-shim "$work/docker/c.sock" ;;
    podman) pids_of conmon "$work/podman/" ;;
    esac
}
# Processes still in the cgroups under a parent (any v1 hierarchy, e.g. pids).
cgroup_procs() {
    local dir=/sys/fs/cgroup/pids$1
    [[ -d $dir ]] || return 0
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null
}
remove_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [[ -d $h${1#/} ]] && find "$h${1#/}" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
cgroups_left() {
    local h
    for h in /sys/fs/cgroup/*/; do [[ -d $h${1#/} ]] && echo "$h${1#/}"; done
    return 0
}
mounts_under() { findmnt -rn -o TARGET | grep -F "$1" | sort -r || true; }
# The network namespaces mounted under /run/netns (podman's rootful containers' namespaces live there too).
netns_files() { find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort || true; }
wait_for() { # wait_for SECONDS CMD...: retries CMD every 0.1 s
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}
# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS (pids this script started).
stop_pid() {
    local p=$1 t=$2 end
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
    kill "$p" 2>/dev/null || true
    end=$((SECONDS + t))
    while kill -0 "$p" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null || true
}
# The processes whose network namespace is the engine's (nothing may outlive the engine there).
pids_in_ns() {
    local target d
    target=$(stat -L -c %i "/run/netns/$(ns_of "$1")" 2>/dev/null) || return 0
    for d in /proc/[0-9]*; do
        [[ $(stat -L -c %i "$d/ns/net" 2>/dev/null) == "$target" ]] && echo "${d#/proc/}"
    done
    return 0
}

# --- the host's network, before and after ----------------------------------------------------------------------------

host_net_state() {
    echo "links: $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ')"
    echo "ip_forward: $(cat /proc/sys/net/ipv4/ip_forward)"
    echo "nft ruleset sha256: $(nft list ruleset 2>/dev/null | sha256sum | cut -d' ' -f1)"
    echo "routes: $(ip route show | sha256sum | cut -d' ' -f1)"
}
host_before=$(host_net_state)
netns_before=$(netns_files)
cni_before=0
[[ -e /var/lib/cni ]] && cni_before=1

# --- starting and stopping the engines ---------------------------------------------------------------------------

make_ns() {
    local ns
    ns=$(ns_of "$1")
    ip netns add "$ns" || berth_die "cannot create the network namespace $ns"
    made_ns[$1]=1
    ip -n "$ns" link set lo up
}
start_berth() {
    mkdir -p "$work/berth"
    echo '{}' >"$work/berth/daemon.json"
    in_ns berth
    "${in_ns[@]}" "$bin/berthd" --config-file "$work/berth/daemon.json" -H "unix://$work/berth.sock" \
        --data-root "$work/berth/data" --exec-root "$work/berth/exec" --pidfile "$work/berth/berthd.pid" \
        --cgroup-parent "$cg_parent-berth" </dev/null >"$work/berth/berthd.log" 2>&1 &
    daemon_pid[berthd]=$!
    cli_of berth
    wait_for 20 "${cli[@]}" version || berth_die "berthd did not start: $(tail -20 "$work/berth/berthd.log")"
}
start_docker() {
    local d=$work/docker
    mkdir -p "$d/ctd"
    cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/ctd/root"
state = "$d/ctd/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/ctd/opt"
EOF
    in_ns docker
    "${in_ns[@]}" containerd --config "$d/containerd.toml" </dev/null >"$d/containerd.log" 2>&1 &
    daemon_pid[containerd]=$!
    wait_for 20 test -S "$d/c.sock" || berth_die "containerd did not start: $(tail -20 "$d/containerd.log")"
    echo "{\"deprecated-key-path\": \"$d/key.json\"}" >"$d/daemon.json"
    # Docker's network defaults: bridge docker0, iptables, ip-forward, ip-masq, userland proxy.
    "${in_ns[@]}" dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/docker.pid" -H "unix://$work/docker.sock" --containerd "$d/c.sock" \
        --containerd-namespace "$tag" --containerd-plugins-namespace "$tag-plugins" \
        --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
        --cgroup-parent "$cg_parent-docker" </dev/null >"$d/dockerd.log" 2>&1 &
    daemon_pid[dockerd]=$!
    cli_of docker
    wait_for 30 "${cli[@]}" version || berth_die "dockerd did not start: $(tail -20 "$d/dockerd.log")"
}
start_podman() {
    local d=$work/podman
    mkdir -p "$d/tmp" "$d/net"
    cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "crun"
events_logger = "file"
events_logfile_path = "$d/events.log"
tmp_dir = "$d/tmp"
volume_path = "$d/root/volumes"
[network]
network_config_dir = "$d/net"
EOF
    cli_of podman
    "${cli[@]}" info >/dev/null 2>"$d/err" || berth_die "podman does not work here: $(cat "$d/err")"
}

# remove_all ENGINE: removes every container of the engine.
remove_all() {
    local e=$1 ids
    cli_of "$e"
    ids=$(timeout 300 "${cli[@]}" ps -aq 2>/dev/null || true)
    [[ -n $ids ]] || return 0
    case $e in
    podman) xargs -r timeout 300 "${cli[@]}" rm -f -t 0 <<<"$ids" >/dev/null 2>&1 || true ;;
    *) xargs -r timeout 300 "${cli[@]}" rm -f <<<"$ids" >/dev/null 2>&1 || true ;;
    esac
}

# stop_engine ENGINE: containers removed, daemons stopped, namespace deleted, then the check: what was left
# (processes, mounts, cgroups, runtime state, namespaces) is noted in cleanup_note[ENGINE] and removed by force.
stop_engine() {
    local e=$1 left=() m p n ns
    [[ -n ${stopped[$e]:-} ]] && return 0
    stopped[$e]=1
    ns=$(ns_of "$e")
    if [[ -z ${made_ns[$e]:-} ]]; then
        cleanup_note[$e]="not started"
        return 0
    fi
    cli_of "$e"
    if [[ $e != podman || -f $CONTAINERS_CONF ]]; then
        remove_all "$e"
        n=$(timeout 120 "${cli[@]}" ps -aq 2>/dev/null | wc -l || true)
        ((n == 0)) || left+=("$n containers still listed after rm -f")
    fi
    case $e in
    berth) stop_pid "${daemon_pid[berthd]:-}" 30 ;;
    docker)
        stop_pid "${daemon_pid[dockerd]:-}" 30
        stop_pid "${daemon_pid[containerd]:-}" 30
        ;;
    podman) ;;
    esac
    # The per-container processes exit with their containers; give them a moment.
    wait_for 15 test -z "$(per_container_pids "$e")" || true
    mapfile -t m < <(per_container_pids "$e")
    if ((${#m[@]})); then
        left+=("${#m[@]} per-container processes (killed)")
        for p in "${m[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    fi
    mapfile -t m < <(cgroup_procs "$cg_parent-$e")
    if ((${#m[@]})); then
        left+=("${#m[@]} processes in $cg_parent-$e (killed)")
        for p in "${m[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.5
    fi
    if [[ $e == berth ]]; then
        # berth-runtime state of containers that outlived everything.
        for m in "$work/berth/exec/runtime"/*/; do
            [[ -d $m ]] || continue
            left+=("runtime state ${m%/}")
            "$bin/berth-runtime" --root "$work/berth/exec/runtime" delete --force "$(basename "$m")" >/dev/null 2>&1 ||
                true
        done
    fi
    if [[ $e == podman && -f $CONTAINERS_CONF ]]; then
        # containers/storage keeps its overlay directory bind-mounted on itself; `system reset` undoes that.
        timeout 120 "${cli[@]}" system reset -f >/dev/null 2>&1 || true
    fi
    mapfile -t m < <(mounts_under "$work/$e")
    if ((${#m[@]})); then
        left+=("${#m[@]} mounts under $work/$e (unmounted): ${m[*]:0:3}")
        for p in "${m[@]}"; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
    fi
    remove_cgroups "$cg_parent-$e"
    mapfile -t m < <(cgroups_left "$cg_parent-$e")
    ((${#m[@]} == 0)) || left+=("cgroups left: ${m[*]}")
    if [[ $e == docker && -d /run/containerd/runc/$tag ]]; then
        rmdir "/run/containerd/runc/$tag" 2>/dev/null || left+=("/run/containerd/runc/$tag is not empty")
    fi
    # Nothing else may live in the namespace any more; then it goes, and with it the bridge, rules and forwarding.
    mapfile -t m < <(pids_in_ns "$e")
    if ((${#m[@]})); then
        left+=("${#m[@]} processes in $ns (killed): $(for p in "${m[@]}"; do cat "/proc/$p/comm" 2>/dev/null; done | tr '\n' ' ')")
        for p in "${m[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.5
    fi
    ip netns delete "$ns" 2>/dev/null || left+=("could not delete the namespace $ns")
    if ((${#left[@]})); then
        cleanup_note[$e]="left behind: $(IFS=';'; echo "${left[*]}")"
    else
        cleanup_note[$e]="clean (no container, daemon, per-container process, mount, cgroup or namespace left)"
    fi
    berth_log "$e stopped: ${cleanup_note[$e]}"
}

# hugetlb_bound: whether the hugetlb controller is still bound to a v1 hierarchy (the 2nd field of /proc/cgroups).
hugetlb_bound() { awk '$1 == "hugetlb" && $2 != 0 { found = 1 } END { exit !found }' /proc/cgroups; }
# Unmounts the hugetlb hierarchy mounted for the run. Other programs may have made cgroups in it meanwhile (every
# engine makes one per v1 hierarchy): those whose twin in the pids hierarchy is gone are orphans and removed; the
# others are waited for (up to 30 s), else the hierarchy stays mounted (unmounting it would orphan them). A hierarchy
# unmounted while a removed child was still being released is not destroyed by the kernel: mounted again and
# unmounted once the child is gone, it is.
unmount_hugetlb() {
    local d rest end=$((SECONDS + 30))
    while :; do
        for d in "$hugetlb"/*/; do
            [[ -d $d && ! -d /sys/fs/cgroup/pids/$(basename "$d") ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
        rest=$(find "$hugetlb" -mindepth 1 -maxdepth 1 -type d | tr '\n' ' ')
        if [[ -z $rest ]] || ((SECONDS >= end)); then break; fi
        sleep 0.5
    done
    if [[ -n $rest ]]; then
        echo "warning: $hugetlb stays mounted: other programs' cgroups are in it: $rest" >&2
        disabled_v2_hugetlb=0
        return 0
    fi
    sleep 0.2
    # A cgroup1 mount is busy while a program (another engine) writes into it: then it is detached lazily.
    umount "$hugetlb" 2>/dev/null || umount -l "$hugetlb" || { echo "warning: could not unmount $hugetlb" >&2; return 0; }
    for _ in 1 2 3; do
        wait_for 2 eval '! hugetlb_bound' && break
        if mount -t cgroup -o hugetlb cgroup "$hugetlb" 2>/dev/null; then
            umount "$hugetlb" 2>/dev/null || umount -l "$hugetlb" || true
        fi
    done
    rmdir "$hugetlb" 2>/dev/null || true
    hugetlb_bound && echo "warning: the hugetlb v1 hierarchy is still alive after its unmount" >&2
    return 0
}

cleanup() {
    local e m
    for e in "${engine_list[@]}"; do stop_engine "$e" || true; done
    # Namespaces that appeared during the run and are still there: ours go; podman's (netns-*) are reported.
    mapfile -t m < <(comm -13 <(echo "$netns_before") <(netns_files))
    for e in "${m[@]}"; do
        case $e in
        "$ns_prefix"-*)
            echo "warning: the network namespace /run/netns/$e was left behind; deleting it" >&2
            ip netns delete "$e" 2>/dev/null || true
            ;;
        netns-*) echo "warning: /run/netns/$e appeared during the run and is still there (a podman container's?)" >&2 ;;
        esac
    done
    mapfile -t m < <(mounts_under "$work")
    for e in "${m[@]}"; do umount "$e" 2>/dev/null || umount -l "$e" 2>/dev/null || true; done
    rm -rf "$work"
    if ((!cni_before)) && [[ -d /var/lib/cni ]]; then
        # podman's CNI backend keeps its cache and host-local leases there; it did not exist before the run.
        rm -rf /var/lib/cni
    fi
    if ((mounted_hugetlb)); then unmount_hugetlb; fi
    if ((disabled_v2_hugetlb)); then
        # hugetlb returns to cgroup2 when the v1 hierarchy dies, which waits for every mount namespace that copied
        # the mount meanwhile (containers started during the run) to go away.
        for _ in $(seq 30); do echo +hugetlb 2>/dev/null >"$unified/cgroup.subtree_control" && break; sleep 0.1; done
        grep -qw hugetlb "$unified/cgroup.subtree_control" ||
            echo "warning: hugetlb is not enabled again in $unified/cgroup.subtree_control: its v1 hierarchy is" \
                "still alive (held by a mount namespace made during the run); when it dies, run" \
                "'echo +hugetlb > $unified/cgroup.subtree_control' to restore the state found at start" >&2
    fi
}
trap cleanup EXIT

# --- set-up ------------------------------------------------------------------------------------------------------

# crun and hybrid cgroups (see the header), as bench/run.sh.
hugetlb=/sys/fs/cgroup/hugetlb unified=/sys/fs/cgroup/unified
mount_hugetlb() {
    mkdir -p "$hugetlb"
    mount -t cgroup -o hugetlb cgroup "$hugetlb" 2>"$work/err" && return 0
    rmdir "$hugetlb" 2>/dev/null || true
    return 1
}
if has_engine podman && [[ -d $unified ]] &&
    ! findmnt -rn -t cgroup -o OPTIONS | tr ',' '\n' | grep -qx hugetlb; then
    berth_log "mounting the hugetlb cgroup v1 hierarchy at $hugetlb (crun 1.8.1 needs it on this hybrid layout);" \
        "it is unmounted at exit"
    if mount_hugetlb; then
        mounted_hugetlb=1
    elif grep -qw hugetlb "$unified/cgroup.subtree_control" 2>/dev/null &&
        echo -hugetlb 2>/dev/null >"$unified/cgroup.subtree_control"; then
        disabled_v2_hugetlb=1
        berth_log "hugetlb was enabled in $unified/cgroup.subtree_control; disabled for the run, enabled again at exit"
        for _ in $(seq 50); do mount_hugetlb && { mounted_hugetlb=1; break; }; sleep 0.1; done
    fi
    ((mounted_hugetlb)) ||
        echo "warning: could not mount hugetlb ($(cat "$work/err")); crun may refuse to run (the check below will tell)" >&2
fi

rootfs="$(berth_cache_dir)/bundles/busybox/rootfs"
berth_busybox_rootfs "$rootfs"
tar -C "$rootfs" --exclude=./.berth-rootfs -cf "$work/busybox.tar" .

declare -A addr=() bridge=() masq=() fwd=() backend=()
for e in "${engine_list[@]}"; do
    berth_log "starting $e in the network namespace $(ns_of "$e")"
    make_ns "$e"
    "start_$e"
    cli_of "$e"
    "${cli[@]}" import "$work/busybox.tar" "$image" >/dev/null 2>"$work/err" ||
        berth_die "$e import failed: $(cat "$work/err")"
    # Before timing: on the default network the container has an interface besides lo and a default route.
    run_flags_of "$e"
    # shellcheck disable=SC2016 # $(...) is for the container's shell
    got=$("${cli[@]}" run --rm "${run_flags[@]}" "$image" sh -c \
        'echo "$(wc -l </proc/net/dev) $(ip route | grep -c "^default via ") $(ip -4 -o addr show scope global | awk "{ print \$2 \"=\" \$4 }" | head -n1)"' \
        </dev/null 2>"$work/err") || berth_die "$e run on the default network failed: $(cat "$work/err")"
    read -r lines defaults "addr[$e]" <<<"$got"
    [[ $lines == 4 && $defaults == 1 && -n ${addr[$e]} ]] ||
        berth_die "$e: the container on the default network should have one interface besides lo, an IPv4 address and a default route; got '$got' (lines of /proc/net/dev, default routes, address)"
    if [[ $e == berth ]]; then
        # shellcheck disable=SC2016 # $(...) is for the container's shell
        got=$("${cli[@]}" run --rm --network none "$image" sh -c 'wc -l </proc/net/dev' </dev/null 2>"$work/err") ||
            berth_die "berth run --network none failed: $(cat "$work/err")"
        [[ $got == 3 ]] || berth_die "berth: a container on --network none should have only lo; /proc/net/dev has $got lines"
    fi
    # The engine's network lives in its namespace, seen while a container runs (CNI's masquerade rules are per
    # container): its bridge, a masquerade rule (nftables; docker's and CNI's iptables rules are nftables rules here,
    # iptables being iptables-nft) and forwarding.
    id=$("${cli[@]}" run -d "${run_flags[@]}" "$image" sleep 600 </dev/null 2>"$work/err") ||
        berth_die "$e run -d on the default network failed: $(cat "$work/err")"
    in_ns "$e"
    bridge[$e]=$(ip -n "$(ns_of "$e")" -o link show type bridge | awk -F': ' '{ print $2 }' | tr '\n' ' ' | xargs)
    masq[$e]=$("${in_ns[@]}" nft list ruleset 2>/dev/null | grep -cw masquerade || true)
    fwd[$e]=$("${in_ns[@]}" cat /proc/sys/net/ipv4/ip_forward)
    host_bridges=$(ip -o link show type bridge | awk -F': ' '{ print $2 }' | tr '\n' ' ')
    case $e in
    podman) "${cli[@]}" rm -f -t 0 "$id" >/dev/null ;;
    *) "${cli[@]}" rm -f "$id" >/dev/null ;;
    esac
    [[ -n ${bridge[$e]} ]] || berth_die "$e: no bridge in its namespace $(ns_of "$e") while a container runs"
    ((masq[$e] > 0)) || berth_die "$e: no masquerade rule in its namespace $(ns_of "$e") while a container runs"
    for b in ${bridge[$e]}; do
        [[ " $host_bridges " != *" $b "* ]] || berth_log "warning: the host's own namespace has a bridge $b too"
    done
    "${cli[@]}" run --rm "${run_flags[@]}" "$image" true </dev/null || berth_die "$e run of true failed"
    [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e run --rm left a container behind"
    case $e in
    podman) backend[$e]=$("${cli[@]}" info --format '{{.Host.NetworkBackend}}' 2>/dev/null || echo '?') ;;
    docker) backend[$e]="iptables ($(iptables --version | awk '{ print $2, $3 }'))" ;;
    berth) backend[$e]=nftables ;;
    esac
    berth_log "$e runs $image on its default network: container ${addr[$e]}, bridge ${bridge[$e]}," \
        "${masq[$e]} masquerade rule(s), ip_forward ${fwd[$e]} in $(ns_of "$e")"
done

version_of() {
    case $1 in
    berth) "$bin/berthd" --version 2>/dev/null | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    docker) dockerd --version | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    podman) podman --version | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    esac
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- timing ----------------------------------------------------------------------------------------------------------

args=()
for r in "${rows[@]}"; do args+=(-n "$r" "$(row_cmd "$r")"); done
berth_log "timing: run --rm $image true on each engine's default network (and berth on --network none)"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/run.json" "${args[@]}" </dev/null
declare -A med=() mean=() sd=()
for r in "${rows[@]}"; do
    read -r "med[$r]" "mean[$r]" "sd[$r]" < <(jq -r --arg n "$r" \
        '.results[] | select(.command == $n) | "\(.median * 1000) \(.mean * 1000) \(.stddev * 1000)"' "$work/run.json")
done
for e in "${engine_list[@]}"; do
    cli_of "$e"
    [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e: run --rm left containers behind during the timing"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
versions=$(for e in "${engine_list[@]}"; do printf '%s %s; ' "$e" "$(version_of "$e")"; done)
for e in "${engine_list[@]}"; do stop_engine "$e"; done
host_after=$(host_net_state)

# --- results -------------------------------------------------------------------------------------------------------

ms() { awk -v v="$1" 'BEGIN { printf "%.1f ms", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
describe() {
    case $1 in
    berth) echo "default \`bridge\` network: ${bridge[berth]}, ${backend[berth]} NAT" ;;
    docker) echo "default \`bridge\` network: ${bridge[docker]}, ${backend[docker]}, userland proxy on" ;;
    podman) echo "default \`podman\` network: ${bridge[podman]}, backend ${backend[podman]}" ;;
    berth-none) echo "reference: \`--network none\` (loopback only)" ;;
    esac
}

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$root_dir/bench/results"
out="$root_dir/bench/results/network-$stamp.txt"
{
    echo "### Whole engines on their default network: run --rm, $(date -u +%Y-%m-%d)"
    echo
    echo "Kernel \`$(uname -r)\`, $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)" \
        "RAM; load average before/after: $load_before / $load_after (\`bench/network.sh\`)."
    runtimes=()
    has_engine docker && runtimes+=("docker uses runc $(runc --version | awk 'NR == 1 { print $3 }')")
    has_engine podman && runtimes+=("podman crun $(crun --version | awk 'NR == 1 { print $3 }')")
    echo "Versions: ${versions%; }$( ((${#runtimes[@]})) && printf '; %s' "${runtimes[@]}")."
    echo "Each engine in its own network namespace (daemons and clients through \`nsenter --net\`, for every row)."
    echo
    echo "#### \`run --rm $image true\`, no network flag (hyperfine -N, $warmup warm-up runs, $runs runs)"
    echo
    echo "| engine | network | container address | median | mean ± sd |"
    echo "|---|---|---|---|---|"
    for r in "${rows[@]}"; do
        a=${addr[$r]:-lo only}
        echo "| $r | $(describe "$r") | $a | $(ms "${med[$r]}") | $(ms "${mean[$r]}") ± $(ms "${sd[$r]}") |"
    done
    if has_engine berth; then
        for ref in docker podman; do
            has_engine "$ref" || continue
            echo "| **berth / $ref** | | | **$(ratio "${med[berth]}" "${med[$ref]}")** | |"
        done
        echo "| berth / berth-none | | | $(ratio "${med[berth]}" "${med[berth-none]}")" \
            "($(awk -v a="${med[berth]}" -v b="${med[berth-none]}" 'BEGIN { printf "%+.1f", a - b }') ms for the network) | |"
    fi
    if has_engine berth && has_engine docker; then
        goal=$(awk -v a="${med[berth]}" -v b="${med[docker]}" 'BEGIN { print (a <= b / 5) ? "met" : "not met" }')
        echo
        echo "Goal (issue 6): berth at most a fifth of docker's time, $(ms "$(awk -v b="${med[docker]}" 'BEGIN { print b / 5 }')"):" \
            "**$goal** (berth $(ms "${med[berth]}"), ratio $(ratio "${med[berth]}" "${med[docker]}"))."
    fi
    echo
    echo "Checked before timing, in each engine's namespace: the container has one interface besides lo, an address" \
        "and a default route; bridge, masquerade rules (nft) and ip_forward: $(for e in "${engine_list[@]}"; do
            printf '%s: %s, %s rule(s), forwarding %s; ' "$e" "${bridge[$e]}" "${masq[$e]}" "${fwd[$e]}"
        done)"
    echo "Clean-up after each engine: $(for e in "${engine_list[@]}"; do printf '%s: %s; ' "$e" "${cleanup_note[$e]:-?}"; done)"
    if [[ $host_before == "$host_after" ]]; then
        echo "The host's network namespace is unchanged (links, routes, nft ruleset, ip_forward compared before/after)."
    else
        echo "The host's network namespace changed during the run (other programs may have changed it):"
        diff <(echo "$host_before") <(echo "$host_after") | sed -n 's/^[<>] /    /p' || true
    fi
} >"$out"
echo
cat "$out"
berth_log "written to ${out#"$root_dir"/}"
