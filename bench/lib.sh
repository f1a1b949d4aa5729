# shellcheck shell=bash disable=SC2034,SC2154
# What the benchmark scripts in bench/ share (it sets root_dir, the repository, and sources scripts/lib.sh):
#   - the command line (bench_args), the engine list (bench_engines, has_engine) and the release build;
#   - private engines: a berthd (start_berthd), dockerd on a private containerd (start_dockerd), podman with a private
#     containers.conf (start_podman), their clients (cli_of), and stop_engine, which removes the containers, stops
#     the daemons and checks what was left (processes, mounts, cgroups, runtime state), removing it by force;
#   - the hugetlb cgroup v1 hierarchy crun 1.8.1 needs on this VM's hybrid layout (hugetlb_for_crun, hugetlb_restore);
#   - helpers: wait_for, stop_pid, pids_of, the cgroup and mount queries, hyperfine statistics, number formats.
# The engine functions use the script's global bin (the release binaries), the globals bench_engine_work sets (work,
# the temporary directory; tag; cg_parent; bench_checked, what the clean-up check covers, for its "clean (no ...
# left)" note), and two hooks a script may redefine after sourcing this file:
#   in_ns ENGINE           sets in_ns to the prefix the engine's daemons and clients run under (here: none)
#   engine_started ENGINE  whether the engine was started (here: it has a daemon pid, or podman its containers.conf)
# and one it may define: engine_stopped ENGINE, run by stop_engine last (it may add to stop_engine's `left`).
# hugetlb_for_crun and mount_hugetlb write their error to $work/err.

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root_dir/scripts/lib.sh"

# --- the command line ----------------------------------------------------------------------------------------------

# bench_args SPEC... -- ARG...: parses the script's arguments. A SPEC `--name=var` is an option with a value, stored
# in var; `--name:var=value` is a flag that sets var to value. -h and --help print the script's header comment.
bench_args() {
    local -A value_of=() flag_of=()
    while (($#)); do
        case $1 in
        --) shift; break ;;
        *:*) flag_of[${1%%:*}]=${1#*:} ;;
        *=*) value_of[${1%%=*}]=${1#*=} ;;
        esac
        shift
    done
    while (($#)); do
        if [[ $1 == -h || $1 == --help ]]; then
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
        elif [[ -n ${value_of[$1]:-} ]]; then
            (($# >= 2)) || berth_die "$1 takes a value (see --help)"
            printf -v "${value_of[$1]}" '%s' "$2"
            shift 2
        elif [[ -n ${flag_of[$1]:-} ]]; then
            printf -v "${flag_of[$1]%%=*}" '%s' "${flag_of[$1]#*=}"
            shift
        else
            berth_die "unknown argument $1 (see --help)"
        fi
    done
}

# bench_engines [KNOWN...]: splits $engines (comma-separated) into engine_list; with KNOWN, every engine must be one.
bench_engines() {
    local e known
    IFS=, read -r -a engine_list <<<"$engines"
    ((${#engine_list[@]})) || berth_die "--engines names no engine"
    (($#)) || return 0
    known=$(printf '%s, ' "$@")
    for e in "${engine_list[@]}"; do
        [[ " $* " == *" $e "* ]] || berth_die "unknown engine $e (known: ${known%, })"
    done
}
has_engine() { [[ ,$engines, == *,$1,* ]]; }

# bench_build_workspace: builds the release workspace (unless --no-build) and checks the binaries the engines run.
bench_build_workspace() {
    local b
    if ((build)); then
        berth_ensure_cargo
        berth_log "building the workspace (release)"
        (cd "$root_dir" && cargo build --release --workspace)
    fi
    for b in berthd berth berth-runtime berth-monitor berth-init; do
        [[ -x $bin/$b ]] || berth_die "$bin/$b does not exist (build the release workspace)"
    done
}

# --- processes, mounts, cgroups ------------------------------------------------------------------------------------

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
# pids_of COMM NEEDLE: pids of the processes whose comm is COMM and whose command line contains NEEDLE.
pids_of() {
    local d comm cmdline
    for d in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$d/comm" || continue
        [[ $comm == "$1" ]] || continue
        mapfile -d '' cmdline 2>/dev/null <"$d/cmdline" || continue
        [[ "${cmdline[*]}" == *"$2"* ]] && echo "${d#/proc/}"
    done
    return 0
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
# remove_work: unmounts what is left under $work and removes it.
remove_work() {
    local m p
    mapfile -t m < <(mounts_under "$work")
    for p in "${m[@]}"; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
    rm -rf "$work"
}

# --- the engines ---------------------------------------------------------------------------------------------------
# berth is the plain berthd; run.sh adds berthd with --userns-remap named remap and shifted. Each berthd NAME lives
# under $work/NAME with its socket at $work/NAME.sock; docker and podman under $work/docker and $work/podman.

# bench_engine_work NAME: the temporary directory /tmp/bb-NAME.XXXXXX (short: unix socket paths such as berth's
# <exec-root>/c/<64 hex>/m.sock must stay under 108 bytes), the tag bench-NAME-<suffix> that names the engines'
# cgroup parents (cg_parent-ENGINE) and containerd namespaces, the image name, and private client configurations.
bench_engine_work() {
    work=$(mktemp -d "/tmp/bb-$1.XXXXXX")
    chmod 755 "$work"
    tag="bench-$1-${work##*.}"
    tag=${tag,,}
    cg_parent="/$tag"
    image=busybox:bench
    export BERTH_CONFIG="$work/berth-config" DOCKER_CONFIG="$work/docker-config" CONTAINERS_CONF="$work/containers.conf"
    unset DOCKER_HOST DOCKER_CONTEXT BERTH_HOST CONTAINER_HOST
    mkdir -p "$DOCKER_CONFIG" # podman reads it too (registry credentials), and wants the file to exist
    echo '{}' >"$DOCKER_CONFIG/config.json"
    declare -gA daemon_pid=()   # berth, remap, shifted (berthd), dockerd, containerd
    declare -gA stopped=()      # engine -> 1 once it was stopped and cleaned
    declare -gA cleanup_note=() # engine -> what the clean-up check found
    bench_checked="container, daemon, per-container process, mount or cgroup"
}

in_ns() { in_ns=(); }
engine_started() { [[ -n $(daemon_pids "$1" | tr -d ' ') || ($1 == podman && -f $CONTAINERS_CONF) ]]; }

# cli_of ENGINE: sets cli to the engine's client command.
cli_of() {
    in_ns "$1"
    case $1 in
    berth | remap | shifted) cli=("${in_ns[@]}" "$bin/berth" -H "unix://$work/$1.sock") ;;
    docker) cli=("${in_ns[@]}" /usr/bin/docker -H "unix://$work/docker.sock") ;;
    podman) cli=("${in_ns[@]}" podman --root "$work/podman/root" --runroot "$work/podman/run"
        --tmpdir "$work/podman/tmp" --storage-driver overlay --runtime crun --cgroup-manager cgroupfs
        --events-backend file) ;;
    esac
}
# per_container_pids ENGINE: the engine's per-container processes (monitors, shims, conmons), one pid a line.
per_container_pids() {
    case $1 in
    berth | remap | shifted) pids_of berth-monitor "$work/$1/exec" ;;
    docker) pids_of containerd-shim "$work/docker/c.sock" ;;
    podman) pids_of conmon "$work/podman/" ;;
    esac
}
# daemon_pids ENGINE: the pids of the engine's daemons (none for podman).
daemon_pids() {
    case $1 in
    berth | remap | shifted) echo "${daemon_pid[$1]:-}" ;;
    docker) echo "${daemon_pid[dockerd]:-}" "${daemon_pid[containerd]:-}" ;;
    podman) ;;
    esac
}
version_of() {
    case $1 in
    berth) "$bin/berthd" --version 2>/dev/null | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    docker) dockerd --version | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    podman) podman --version | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 ;;
    esac
}

# start_berthd NAME [VAR=VALUE...] [FLAG...]: a berthd with its own socket, data root, exec root, pid file, config
# file and cgroup parent, the environment variables and berthd flags given.
start_berthd() {
    local n=$1 vars=() what=berthd cli
    shift
    while (($#)) && [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do vars+=("$1"); shift; done
    [[ $n == berth ]] || what="berthd ($n)"
    mkdir -p "$work/$n"
    echo '{}' >"$work/$n/daemon.json"
    in_ns "$n"
    "${in_ns[@]}" env "${vars[@]}" "$bin/berthd" --config-file "$work/$n/daemon.json" -H "unix://$work/$n.sock" \
        --data-root "$work/$n/data" --exec-root "$work/$n/exec" --pidfile "$work/$n/berthd.pid" \
        --cgroup-parent "$cg_parent-$n" "$@" </dev/null >"$work/$n/berthd.log" 2>&1 &
    daemon_pid[$n]=$!
    cli_of "$n"
    wait_for 20 "${cli[@]}" version || berth_die "$what did not start: $(tail -20 "$work/$n/berthd.log")"
}
# start_dockerd [FLAG...]: a private containerd (config, root, state, sockets under $work/docker) and on it a dockerd
# with its own data root, exec root, socket, containerd namespaces and cgroup parent, overlay2 and cgroupfs, and the
# dockerd flags given (the network set-up).
start_dockerd() {
    local d=$work/docker cli
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
    "${in_ns[@]}" dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/docker.pid" -H "unix://$work/docker.sock" --containerd "$d/c.sock" \
        --containerd-namespace "$tag" --containerd-plugins-namespace "$tag-plugins" "$@" \
        --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
        --cgroup-parent "$cg_parent-docker" </dev/null >"$d/dockerd.log" 2>&1 &
    daemon_pid[dockerd]=$!
    cli_of docker
    wait_for 30 "${cli[@]}" version || berth_die "dockerd did not start: $(tail -20 "$d/dockerd.log")"
}
# start_podman: podman's private containers.conf (no default ulimits: CAP_SYS_RESOURCE is missing from this VM's
# bounding set; network_config_dir under $work, so its default network is the built-in one), and a check that it works.
start_podman() {
    local d=$work/podman cli
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

# remove_all ENGINE: removes every container of the engine (prints the seconds it took).
remove_all() {
    local e=$1 t0 ids cli
    cli_of "$e"
    t0=$EPOCHREALTIME
    ids=$(timeout 300 "${cli[@]}" ps -aq 2>/dev/null || true)
    if [[ -n $ids ]]; then
        case $e in
        podman) xargs -r -n 100 timeout 600 "${cli[@]}" rm -f -t 0 <<<"$ids" >/dev/null 2>>"$work/$e-rm.err" || true ;;
        *) xargs -r -n 100 timeout 600 "${cli[@]}" rm -f <<<"$ids" >/dev/null 2>>"$work/$e-rm.err" || true ;;
        esac
    fi
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

# stop_engine ENGINE: containers removed, daemons stopped, then the check: what was left (processes, mounts, cgroups,
# runtime state, and whatever engine_stopped checks) is noted in cleanup_note[ENGINE] and removed by force.
stop_engine() {
    local e=$1 left=() m p n cli
    [[ -n ${stopped[$e]:-} ]] && return 0
    stopped[$e]=1
    if ! engine_started "$e"; then
        cleanup_note[$e]="not started"
        return 0
    fi
    cli_of "$e"
    if [[ $e != podman || -f $CONTAINERS_CONF ]]; then
        remove_all "$e" >/dev/null
        n=$(timeout 120 "${cli[@]}" ps -aq 2>/dev/null | wc -l || true)
        ((n == 0)) || left+=("$n containers still listed after rm -f")
    fi
    read -r -a m <<<"$(daemon_pids "$e")"
    for p in "${m[@]}"; do stop_pid "$p" 30; done
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
    if [[ $e == berth || $e == remap || $e == shifted ]]; then
        # berth-runtime state of containers that outlived everything.
        for m in "$work/$e/exec/runtime"/*/; do
            [[ -d $m ]] || continue
            left+=("runtime state ${m%/}")
            "$bin/berth-runtime" --root "$work/$e/exec/runtime" delete --force "$(basename "$m")" >/dev/null 2>&1 || true
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
    if declare -F engine_stopped >/dev/null; then engine_stopped "$e"; fi
    if ((${#left[@]})); then
        cleanup_note[$e]="left behind: $(IFS=';'; echo "${left[*]}")"
    else
        cleanup_note[$e]="clean (no $bench_checked left)"
    fi
    berth_log "$e stopped: ${cleanup_note[$e]}"
}

# bench_busybox_tar: the busybox rootfs (rootfs, cached) as a tar to import, $work/busybox.tar.
bench_busybox_tar() {
    rootfs="$(berth_cache_dir)/bundles/busybox/rootfs"
    berth_busybox_rootfs "$rootfs"
    tar -C "$rootfs" --exclude=./.berth-rootfs -cf "$work/busybox.tar" .
}

# --- hugetlb for crun ----------------------------------------------------------------------------------------------
# crun 1.8.1 refuses this VM's hybrid cgroup layout unless hugetlb is a v1 hierarchy. hugetlb_for_crun mounts it at
# /sys/fs/cgroup/hugetlb if it is missing. The v1 mount fails with EBUSY while hugetlb is enabled in the unified root's
# cgroup.subtree_control (something on the machine may have written +hugetlb there): then it is disabled there for the
# run (it works only when no cgroup below enables it further). hugetlb_restore (at exit) undoes both.

hugetlb=/sys/fs/cgroup/hugetlb unified=/sys/fs/cgroup/unified
mounted_hugetlb=0
disabled_v2_hugetlb=0
mount_hugetlb() {
    mkdir -p "$hugetlb"
    mount -t cgroup -o hugetlb cgroup "$hugetlb" 2>"$work/err" && return 0
    rmdir "$hugetlb" 2>/dev/null || true
    return 1
}
hugetlb_for_crun() {
    [[ -d $unified ]] && ! findmnt -rn -t cgroup -o OPTIONS | tr ',' '\n' | grep -qx hugetlb || return 0
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
hugetlb_restore() {
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
    return 0
}

# --- results -------------------------------------------------------------------------------------------------------

# read_stats JSON NAME...: the median, mean and standard deviation (ms) of hyperfine's command NAME, from its
# --export-json file, into the script's associative arrays med, mean and sd.
read_stats() {
    local json=$1 n
    shift
    for n in "$@"; do
        read -r "med[$n]" "mean[$n]" "sd[$n]" < <(jq -r --arg n "$n" \
            '.results[] | select(.command == $n) | "\(.median * 1000) \(.mean * 1000) \(.stddev * 1000)"' "$json")
    done
}
ms() { awk -v v="$1" 'BEGIN { printf "%.1f ms", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
