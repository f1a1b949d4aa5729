#!/usr/bin/env bash
# Start-up time of berth-runtime against the two reference OCI runtimes, crun and runc, with hyperfine.
#
#   sudo bash bench/runtime.sh [--engines berth,crun,runc] [--runs 100] [--warmup 10] [--no-build]
#
# Three scenarios, the same for every engine:
#   run        `<rt> --root R run --bundle B ID`: the whole container life in one command, /bin/true as the process.
#   lifecycle  `create --bundle B ID`, `start ID`, `state ID` until it says "stopped", `delete ID`: what containerd
#              and podman do, one command each (a small /bin/sh script, written below, the same for every engine).
#   limits     `run` as above with a 256 MiB memory limit, a 50% cpu quota and a Docker-sized seccomp profile (the
#              one Debian's containers-common package installs for podman, /usr/share/containers/seccomp.json,
#              turned into the OCI form at run time: the rules that apply to amd64 and to a container without
#              extra capabilities).
# Every engine runs the very same config.json (made by `runc spec`, so no engine brings its own defaults: network,
# pid, ipc, uts and mount namespaces, read-only root, masked paths; the ambient capabilities made inheritable, see
# make_bundle), on the same busybox rootfs, with its own --root
# under a fresh directory in /run. `run` deletes the container when it exits, so a fixed id per engine is reused; the
# script checks that before it times anything.
#
# Machine quirks handled here (see /work/shared/machine-notes.md):
# - crun 1.8.1 refuses this VM's hybrid cgroup layout while hugetlb is left to cgroup2. If hugetlb is not mounted as a
#   v1 hierarchy, the script mounts it at /sys/fs/cgroup/hugetlb for the benchmark (disabling hugetlb in the cgroup2
#   root's subtree_control first if something enabled it there) and undoes both afterwards (bench/lib.sh).
# - After `create` the container's init is an orphan, and PID 1 of this VM reaps orphans only every few seconds, so
#   exited inits would pile up as zombies during a timing loop. hyperfine runs under `tini -s` (a subreaper that
#   reaps at once), as a real engine's monitor would (containerd-shim, conmon). crun and runc report a zombie init
#   as "stopped", so the lifecycle loop ends either way.
#
# Prints the medians and the ratios Berth/crun and Berth/runc, and writes the same as a markdown snippet for
# docs/benchmarks.md to bench/results/runtime-<date>.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

engines=berth,crun,runc
runs=100
warmup=10
build=1
bench_args --engines=engines --runs=runs --warmup=warmup --no-build:build=0 -- "$@"
bench_engines berth crun runc

berth_require_root bench/runtime.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}"

berth_bin="$(berth_target_dir release)/berth-runtime"
declare -A runtime_of
for e in "${engine_list[@]}"; do
    case $e in
    berth) runtime_of[berth]=$berth_bin ;;
    crun | runc) runtime_of[$e]=$(command -v "$e") || berth_die "$e is not installed" ;;
    esac
done

if [[ -n ${runtime_of[berth]:-} ]]; then
    if ((build)); then
        berth_ensure_cargo
        berth_log "building berth-runtime (release)"
        (cd "$root_dir" && cargo build --release -p berth-runtime)
    fi
    [[ -x $berth_bin ]] || berth_die "$berth_bin does not exist (build it, or leave berth out with --engines crun,runc)"
fi

work=$(mktemp -d /run/berth-bench.XXXXXX)
cleanup() {
    local e
    for e in "${!runtime_of[@]}"; do
        for id in "bench-run-$e" "bench-cycle-$e" "bench-check-$e" "bench-cgroup-$e"; do
            "${runtime_of[$e]}" --root "$work/state-$e" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work"
    hugetlb_restore
}
trap cleanup EXIT

# crun and hybrid cgroups: see the header.
if [[ -n ${runtime_of[crun]:-} ]]; then hugetlb_for_crun; fi

# The bundles: one rootfs (cached, read-only in the container), two config.json files that point at it.
rootfs="$(berth_cache_dir)/bundles/busybox/rootfs"
berth_busybox_rootfs "$rootfs"
make_bundle() {
    local dir=$1 args=$2
    mkdir -p "$dir"
    runc spec --bundle "$dir"
    # `runc spec` asks for ambient capabilities without making them inheritable, which the kernel refuses; runc
    # and crun skip that quietly, a stricter runtime fails. Making them inheritable gives every engine the same
    # valid request (as `crun spec`'s and `berth-runtime spec`'s defaults do).
    jq --arg root "$rootfs" --argjson args "$args" \
        '.root.path = $root | .process.terminal = false | .process.args = $args | .hostname = "berth-bench"
         | .process.capabilities.inheritable = .process.capabilities.ambient' \
        "$dir/config.json" >"$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}
make_bundle "$work/bundle-true" '["/bin/true"]'
# The limits bundle: the same, plus resources and seccomp.
profile=/usr/share/containers/seccomp.json
[[ -r $profile ]] || berth_die "$profile is missing (Debian's golang-github-containers-common, installed with podman)"
make_bundle "$work/bundle-limits" '["/bin/true"]'
jq --slurpfile p "$profile" '
    .linux.resources = {"memory": {"limit": 268435456}, "cpu": {"quota": 50000, "period": 100000}}
    | .linux.seccomp = {
        "defaultAction": $p[0].defaultAction,
        "defaultErrnoRet": $p[0].defaultErrnoRet,
        "architectures": ([$p[0].archMap[] | select(.architecture == "SCMP_ARCH_X86_64")
                           | .architecture, .subArchitectures[]]),
        "syscalls": [$p[0].syscalls[]
            | select((.includes // {}) as $i | ($i.caps // []) == [] and
                     (($i.arches // []) == [] or (($i.arches // []) | index("amd64"))))
            | {names, action} + (if .args then {args} else {} end)
              + (if .errnoRet then {errnoRet} else {} end)]
      }' "$work/bundle-limits/config.json" >"$work/bundle-limits/config.json.new"
mv "$work/bundle-limits/config.json.new" "$work/bundle-limits/config.json"
# shellcheck disable=SC2016 # $(...) and $$ are for the container's shell
make_bundle "$work/bundle-check" '["/bin/sh", "-c", "echo \"$(hostname) $$ $(cat /proc/net/dev | wc -l)\""]'

# The lifecycle scenario, one script for all engines. /bin/sh is dash: its start-up (~0.5 ms) is the same for all.
cat >"$work/lifecycle.sh" <<'EOF'
#!/bin/sh
# lifecycle.sh RUNTIME ROOT BUNDLE ID: create, start, wait until stopped, delete.
set -e
rt=$1 root=$2 bundle=$3 id=$4
"$rt" --root "$root" create --bundle "$bundle" "$id"
"$rt" --root "$root" start "$id"
n=0
while :; do
    case $("$rt" --root "$root" state "$id") in
    *'"status": "stopped"'* | *'"status":"stopped"'*) break ;;
    esac
    n=$((n + 1))
    if [ "$n" -ge 5000 ]; then
        echo "lifecycle.sh: $id did not stop" >&2
        exit 1
    fi
done
"$rt" --root "$root" delete "$id"
EOF

# Before timing anything: every engine runs the bundle correctly, and leaves no container behind.
declare -A own_cgroup
for e in "${engine_list[@]}"; do
    rt=${runtime_of[$e]}
    st="$work/state-$e"
    got=$("$rt" --root "$st" run --bundle "$work/bundle-check" "bench-check-$e" </dev/null 2>"$work/err") ||
        berth_die "$e cannot run the benchmark bundle: $(cat "$work/err")"
    # hostname, the shell's pid, and /proc/net/dev: 2 header lines + lo = 3 lines in a fresh network namespace.
    [[ $got == "berth-bench 1 3" ]] ||
        berth_die "$e ran the bundle wrongly: expected 'berth-bench 1 3' (hostname, pid 1, only lo), got '$got'"
    "$rt" --root "$st" run --bundle "$work/bundle-true" "bench-run-$e" </dev/null ||
        berth_die "$e run of /bin/true failed"
    "$rt" --root "$st" run --bundle "$work/bundle-limits" "bench-limits-$e" </dev/null 2>"$work/err" ||
        berth_die "$e run of /bin/true with limits and seccomp failed: $(cat "$work/err")"
    if "$rt" --root "$st" state "bench-run-$e" >/dev/null 2>&1; then
        berth_die "$e run left container bench-run-$e behind; the run benchmark needs a fresh id per run"
    fi
    tini -s -- /bin/sh "$work/lifecycle.sh" "$rt" "$st" "$work/bundle-true" "bench-cycle-$e" </dev/null ||
        berth_die "$e create/start/state/delete failed"
    if "$rt" --root "$st" state "bench-cycle-$e" >/dev/null 2>&1; then
        berth_die "$e delete left container bench-cycle-$e behind"
    fi
    # Does the engine put the container in cgroups of its own? crun and runc do (cgroupfs driver); a runtime that
    # skips that does less work, and the table says so.
    "$rt" --root "$st" create --bundle "$work/bundle-true" "bench-cgroup-$e" </dev/null >/dev/null ||
        berth_die "$e create failed"
    pid=$("$rt" --root "$st" state "bench-cgroup-$e" | jq -r .pid)
    own_cgroup[$e]=no
    cmp -s "/proc/$pid/cgroup" "/proc/$$/cgroup" || own_cgroup[$e]=yes
    "$rt" --root "$st" delete --force "bench-cgroup-$e" || berth_die "$e delete --force of a created container failed"
    berth_log "$e runs the bundle correctly ($rt; own cgroups: ${own_cgroup[$e]})"
done

display_name() { case $1 in berth) echo berth-runtime ;; *) echo "$1" ;; esac; }

bench() {
    local scenario=$1 e args=()
    for e in "${engine_list[@]}"; do
        local rt=${runtime_of[$e]} st="$work/state-$e"
        args+=(-n "$(display_name "$e")")
        case $scenario in
        run) args+=("$rt --root $st run --bundle $work/bundle-true bench-run-$e") ;;
        lifecycle) args+=("/bin/sh $work/lifecycle.sh $rt $st $work/bundle-true bench-cycle-$e") ;;
        limits) args+=("$rt --root $st run --bundle $work/bundle-limits bench-limits-$e") ;;
        esac
    done
    berth_log "timing: $scenario"
    tini -s -- hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/$scenario.json" "${args[@]}" </dev/null
}
bench run
bench lifecycle
bench limits

# Results. Medians in milliseconds, by engine and scenario.
median() { jq -r --arg n "$(display_name "$1")" '.results[] | select(.command == $n) | .median * 1000' "$work/$2.json"; }
version() {
    case $1 in
    berth) "${runtime_of[berth]}" --version 2>/dev/null | head -n1 || echo "?" ;;
    *) "${runtime_of[$1]}" --version | head -n1 ;;
    esac | grep -oE '[0-9]+(\.[0-9]+)+[^ ]*' | head -n1
}

declare -A med
for e in "${engine_list[@]}"; do
    med[$e,run]=$(median "$e" run)
    med[$e,lifecycle]=$(median "$e" lifecycle)
    med[$e,limits]=$(median "$e" limits)
done

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$root_dir/bench/results"
out="$root_dir/bench/results/runtime-$stamp.md"
{
    echo "### berth-runtime vs crun and runc, $(date -u +%Y-%m-%d)"
    echo
    echo "Kernel \`$(uname -r)\`, $(nproc) CPUs; hyperfine, $warmup warm-up runs, $runs timed runs, medians;" \
        "the same busybox bundle and config.json for every engine (\`bench/runtime.sh\`)."
    echo
    echo "| engine | version | own cgroups | \`run\` /bin/true | create + start + delete | \`run\` with limits + seccomp |"
    echo "|---|---|---|---|---|---|"
    for e in "${engine_list[@]}"; do
        echo "| $(display_name "$e") | $(version "$e") | ${own_cgroup[$e]} | $(ms "${med[$e,run]}")" \
            "| $(ms "${med[$e,lifecycle]}") | $(ms "${med[$e,limits]}") |"
    done
    if [[ -n ${runtime_of[berth]:-} ]]; then
        for ref in crun runc; do
            [[ -n ${runtime_of[$ref]:-} ]] || continue
            echo "| **Berth / $ref** | | | $(ratio "${med[berth,run]}" "${med[$ref,run]}")" \
                "| $(ratio "${med[berth,lifecycle]}" "${med[$ref,lifecycle]}")" \
                "| $(ratio "${med[berth,limits]}" "${med[$ref,limits]}") |"
        done
    fi
    for e in "${engine_list[@]}"; do
        if [[ ${own_cgroup[$e]} == no ]]; then
            echo
            echo "\"own cgroups: no\" means the engine left the container in the caller's cgroups, skipping work that" \
                "the others do; compare with that in mind."
            break
        fi
    done
} >"$out"
echo
cat "$out"
echo
berth_log "written to ${out#"$root_dir"/}"
