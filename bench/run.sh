#!/usr/bin/env bash
# Whole engines, side by side in one run: Berth (berthd + berth-monitor) beside docker and podman.
#
#   sudo bash bench/run.sh [--engines berth,docker,podman] [--runs 30] [--warmup 5] [--count 50]
#                          [--large berth] [--large-count 1000] [--no-build]
#                          [--no-remap] [--only remap] [--remap-files 20000]
#
# 1. Start-up: `<engine> run --rm --network none busybox:bench true`, all engines in one hyperfine invocation
#    (--warmup runs, then --runs timed runs each), medians and the ratios Berth/docker and Berth/podman.
#    With Berth: two more berthd beside the plain one, both with `--userns-remap` for a test user whose ids and
#    ranges (200000-265535) come from a temporary BERTH_ETC_DIR (never the real /etc): `remap` with the layer mode
#    berthd picks (idmapped mounts where the kernel allows them) and `shifted` with the shifted-layer fallback forced
#    (BERTH_USERNS_LAYERS=shifted); both are in the same hyperfine invocation, with the ratios remap/plain.
# 1b. userns-remap, the first run after an import: plain, remap and shifted each run two images whose layers are
#    their own (small: busybox + one file; large: busybox + --remap-files files), timed on the first run after
#    `rmi` + `import` (hyperfine --prepare; a shifted layer pays its shift there, once) and on later runs.
#    --no-remap leaves 1b and the remap daemons out; --only remap runs only Berth, without and with remap (1 and 1b;
#    no docker, podman or density) and writes bench/results/run-remap-<date>.txt.
# 2. Density: --count (default 50) detached containers per engine, `run -d --network none busybox:bench sleep 3600`
#    one after the other from a shell loop as a user would. Reported: the wall time to start them all and per
#    container (mean, median, p90, max), and the memory of the daemon plus the per-container processes, as sums of
#    VmRSS (/proc/<pid>/status) and of Pss (/proc/<pid>/smaps_rollup), and per container:
#      berth   berthd                  + one berth-monitor per container
#      docker  dockerd + containerd    + one containerd-shim-runc-v2 per container
#      podman  (no daemon)             + one conmon per container
#    The containers' own `sleep` processes are not counted (the same for every engine). Then `<engine> ps` is timed
#    with hyperfine while they all run, and they are removed (`rm -f`, timed).
#    The engines in --large (default: berth; `none` for none; the BERTH_BENCH_LARGE environment variable sets the
#    default) repeat this with --large-count (default 1000) containers running at once.
# Every engine is private and left clean after its part (containers removed, daemon stopped, no mounts, no cgroups):
#   berth   the release build (`cargo build --release --workspace`), a berthd started here with its own socket, data
#           root, exec root, config file and cgroup parent under a temporary directory, and `--bridge none` (as
#           dockerd below: the host's network is not touched; bench/network.sh measures the default networks)
#   docker  Debian's dockerd (20.10, its own CLI /usr/bin/docker) with its own data root, exec root, socket and
#           cgroup parent, on a private containerd (config, root, state, sockets in the temporary directory), no
#           bridge, iptables or forwarding (as bench/daemon.sh); runc through containerd-shim-runc-v2
#   podman  podman 4.3 with its own --root, --runroot and --tmpdir, overlay storage, crun, cgroupfs, file events, a
#           private containers.conf (no default ulimits: CAP_SYS_RESOURCE is missing from this VM's bounding set)
# The image is made offline from the distribution's static busybox (busybox-static): a rootfs tar imported into
# every engine (`berth import`, `docker import`, `podman import`) as busybox:bench.
# crun 1.8.1 refuses this VM's hybrid cgroup layout unless hugetlb is a v1 hierarchy: the script mounts it for the
# run if podman is benchmarked and it is missing (disabling hugetlb in the cgroup2 root's subtree_control first if
# something enabled it there), and undoes both at the end.
#
# Prints the results and writes them to bench/results/run-<date>.txt.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

engines=berth,docker,podman
runs=30
warmup=5
count=50
large=${BERTH_BENCH_LARGE:-berth}
large_count=1000
build=1
remap=1
only=""
remap_files=20000
bench_args --engines=engines --runs=runs --warmup=warmup --count=count --large=large --large-count=large_count \
    --no-build:build=0 --no-remap:remap=0 --only=only --remap-files=remap_files -- "$@"
case $only in
"") ;;
remap) engines=berth remap=1 ;;
*) berth_die "--only takes remap, not $only" ;;
esac
bench_engines berth docker podman
is_large() { [[ ,$large, == *,$1,* ]]; }
((runs >= 2 && count >= 1 && large_count >= 1)) || berth_die "--runs must be at least 2, the counts at least 1"
((remap_files >= 1)) || berth_die "--remap-files must be at least 1"
has_remap() { ((remap)) && has_engine berth; }
# The userns-remap daemons (beside berth, with the same binaries): remap (idmapped layers where the kernel allows them)
# and shifted (the shifted-layer fallback forced).
remap_list=()
if has_remap; then remap_list=(remap shifted); fi
remap_user=berthbench remap_uid=2100 remap_start=200000

berth_require_root bench/run.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}"
bin=$(berth_target_dir release)
if has_engine berth; then bench_build_workspace; fi

bench_engine_work run

# Extra `run` flags: podman has no daemon-wide cgroup parent.
run_flags_of() {
    case $1 in
    podman) run_flags=(--network none --cgroup-parent "$cg_parent-podman") ;;
    *) run_flags=(--network none) ;;
    esac
}

# --- memory --------------------------------------------------------------------------------------------------------

# mem PID...: "<processes> <VmRSS sum kB> <Pss sum kB>" (processes that vanished meanwhile are not counted).
mem() {
    local p status=() rollup=()
    for p in "$@"; do
        [[ -n $p ]] || continue
        status+=("/proc/$p/status")
        rollup+=("/proc/$p/smaps_rollup")
    done
    if ((${#status[@]} == 0)); then
        echo "0 0 0"
        return
    fi
    paste -d' ' \
        <(cat "${status[@]}" 2>/dev/null | awk '/^VmRSS:/ { n++; r += $2 } END { print n + 0, r + 0 }') \
        <(cat "${rollup[@]}" 2>/dev/null | awk '/^Pss:/ { p += $2 } END { print p + 0 }')
}

# --- starting the engines (bench/lib.sh stops them) ----------------------------------------------------------------

# No bridge, iptables or forwarding for any engine (the host's network is not touched).
start_berth() { start_berthd berth --bridge none; }
# start_berth_userns NAME: a berthd with --userns-remap for the test user of $work/etc (made here); NAME shifted
# forces the shifted-layer fallback.
start_berth_userns() {
    local n=$1 etc=$work/etc layers=()
    mkdir -p "$work/$n" "$etc"
    printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s::/nonexistent:/usr/sbin/nologin\n' \
        "$remap_user" "$remap_uid" "$remap_uid" >"$etc/passwd"
    printf 'root:x:0:\n%s:x:%s:\n' "$remap_user" "$remap_uid" >"$etc/group"
    echo "$remap_user:$remap_start:65536" >"$etc/subuid"
    echo "$remap_user:$remap_start:65536" >"$etc/subgid"
    [[ $n == shifted ]] && layers=(BERTH_USERNS_LAYERS=shifted)
    start_berthd "$n" BERTH_ETC_DIR="$etc" "${layers[@]}" --userns-remap "$remap_user" --bridge none
}
start_remap() { start_berth_userns remap; }
start_shifted() { start_berth_userns shifted; }
start_docker() {
    start_dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --userland-proxy=false
}

cleanup() {
    local e
    for e in "${engine_list[@]}" "${remap_list[@]}"; do stop_engine "$e" || true; done
    remove_work
    hugetlb_restore
}
trap cleanup EXIT

# --- set-up ------------------------------------------------------------------------------------------------------

# crun and hybrid cgroups (see the header and bench/lib.sh).
if has_engine podman; then hugetlb_for_crun; fi

bench_busybox_tar

for e in "${engine_list[@]}" "${remap_list[@]}"; do
    berth_log "starting $e"
    "start_$e"
    cli_of "$e"
    "${cli[@]}" import "$work/busybox.tar" "$image" >/dev/null 2>"$work/err" ||
        berth_die "$e import failed: $(cat "$work/err")"
    # Before timing: the engine runs the image on network none (only lo) and --rm leaves nothing behind.
    run_flags_of "$e"
    # shellcheck disable=SC2016 # $(...) is for the container's shell
    got=$("${cli[@]}" run --rm "${run_flags[@]}" "$image" sh -c 'echo ok $(cat /proc/net/dev | wc -l)' \
        </dev/null 2>"$work/err") || berth_die "$e run failed: $(cat "$work/err")"
    [[ $got == "ok 3" ]] || berth_die "$e ran the image wrongly: expected 'ok 3' (only lo), got '$got'"
    "${cli[@]}" run --rm "${run_flags[@]}" "$image" true </dev/null || berth_die "$e run of true failed"
    [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e run --rm left a container behind"
    berth_log "$e runs $image correctly"
done
# The remap daemons: the container's root is the test user's first id, and the layer mode is the one asked for.
declare -A remap_mode=()
for e in "${remap_list[@]}"; do
    cli_of "$e"
    got=$("${cli[@]}" run --rm --network none "$image" cat /proc/self/uid_map </dev/null 2>"$work/err" | xargs) ||
        berth_die "$e: run failed: $(cat "$work/err")"
    [[ $got == "0 $remap_start 65536" ]] || berth_die "$e: the container's uid_map is '$got', not '0 $remap_start 65536'"
    remap_mode[$e]=$("${cli[@]}" info --format '{{json .DriverStatus}}' |
        jq -r '.[] | select(.[0] == "Userns layers") | .[1]')
    berth_log "$e: container root is host uid $remap_start; layers: ${remap_mode[$e]}"
done
if has_remap; then
    [[ ${remap_mode[shifted]} == "shifted unpack" ]] ||
        berth_die "shifted: berth info reports the layer mode '${remap_mode[shifted]}', not 'shifted unpack'"
    [[ ${remap_mode[remap]} == "idmapped mounts" ]] ||
        echo "warning: idmapped mounts are not supported here: remap uses '${remap_mode[remap]}'" >&2
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. start-up ---------------------------------------------------------------------------------------------------

args=()
for e in "${engine_list[@]}" "${remap_list[@]}"; do
    cli_of "$e"
    run_flags_of "$e"
    args+=(-n "$e" "${cli[*]} run --rm ${run_flags[*]} $image true")
done
berth_log "timing: run --rm --network none $image true"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/run.json" "${args[@]}" </dev/null
declare -A med=() mean=() sd=()
read_stats "$work/run.json" "${engine_list[@]}" "${remap_list[@]}"
for e in "${engine_list[@]}" "${remap_list[@]}"; do
    cli_of "$e"
    [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e: run --rm left containers behind during the timing"
done
for e in "${remap_list[@]}"; do
    berth_log "$e (${remap_mode[$e]}) / plain berth: $(awk -v a="${med[$e]}" -v b="${med[berth]}" \
        'BEGIN { printf "%.2f (%.1f ms / %.1f ms)", a / b, a, b }')"
done

# --- 1b. userns-remap: the first run after an import, and later runs -----------------------------------------------

declare -A fmed=() # "<daemon> <image> first|later" -> median in ms
first_runs=$((runs < 10 ? runs : 10))
if has_remap; then
    # Images whose layers are their own (busybox:bench shares none with them), so that `rmi` removes the layer and the
    # next import brings an unshifted copy: small = busybox + one file, large = busybox + $remap_files files.
    for img in small large; do
        stage=$work/stage-$img
        cp -a "$rootfs" "$stage"
        rm -f "$stage/.berth-rootfs"
        echo "$img" >"$stage/etc/bench-$img"
        if [[ $img == large ]]; then
            for ((i = 0; i < remap_files; i += 200)); do
                last=$((i + 199 < remap_files - 1 ? i + 199 : remap_files - 1))
                mkdir -p "$stage/usr/share/bench/d$i"
                (cd "$stage/usr/share/bench/d$i" && seq "$i" "$last" | sed 's/^/f/' | xargs touch)
            done
        fi
        tar -C "$stage" -cf "$work/first-$img.tar" .
        rm -rf "$stage"
    done
    # reimport.sh BERTH SOCKET TAR NAME: removes the image NAME and imports TAR as NAME again (a fresh layer).
    # shellcheck disable=SC2016 # the script's own parameters
    printf '%s\n' '"$1" -H "unix://$2" rmi -f "$4" >/dev/null 2>&1 || true' \
        '"$1" -H "unix://$2" import "$3" "$4" >/dev/null' >"$work/reimport.sh"
    reimport() { bash "$work/reimport.sh" "$bin/berth" "$work/$1.sock" "$work/first-$2.tar" "first-$2:bench"; }
    # The premise: after rmi + import the shifted daemon has an unshifted layer, which the next run shifts.
    markers() { find "$work/shifted/data" -path '*/overlay2/*' -name shifted | wc -l; }
    reimport shifted small
    m0=$(markers)
    "$bin/berth" -H "unix://$work/shifted.sock" run --rm --network none first-small:bench true </dev/null ||
        berth_die "shifted: run of first-small:bench failed"
    m1=$(markers)
    reimport shifted small
    m2=$(markers)
    ((m1 == m0 + 1 && m2 == m0)) || berth_die "shifted: rmi + import does not bring a fresh layer (shift markers" \
        "$m0, $m1 after a run, $m2 after rmi + import): the first-run timing would be wrong"
    fargs=() fprep=()
    for e in berth "${remap_list[@]}"; do
        cli_of "$e"
        for img in small large; do
            fargs+=(-n "$e $img first" "${cli[*]} run --rm --network none first-$img:bench true")
            fprep+=(--prepare "bash $work/reimport.sh $bin/berth $work/$e.sock $work/first-$img.tar first-$img:bench")
            fargs+=(-n "$e $img later" "${cli[*]} run --rm --network none first-$img:bench true")
            fprep+=(--prepare true)
        done
    done
    berth_log "timing: the first run --rm after rmi + import, and later runs ($first_runs runs each)"
    hyperfine -N --warmup 2 --runs "$first_runs" "${fprep[@]}" --export-json "$work/first.json" "${fargs[@]}" </dev/null
    for e in berth "${remap_list[@]}"; do
        cli_of "$e"
        for img in small large; do
            for kind in first later; do
                fmed[$e $img $kind]=$(jq -r --arg n "$e $img $kind" \
                    '.results[] | select(.command == $n) | .median * 1000' "$work/first.json")
            done
            berth_log "$e, $img image: first run $(awk -v a="${fmed[$e $img first]}" -v b="${fmed[$e $img later]}" \
                'BEGIN { printf "%.1f ms, later runs %.1f ms (%.2fx)", a, b, a / b }')"
            "${cli[@]}" rmi -f "first-$img:bench" >/dev/null 2>&1 || true
        done
        [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e: run --rm left containers behind during the timing"
    done
    for e in "${remap_list[@]}"; do stop_engine "$e"; done
fi

# remap_report: the userns-remap results (markdown).
remap_report() {
    local e img
    echo "#### userns-remap: \`run --rm --network none $image true\` (in the same hyperfine run as the plain one)"
    echo
    echo "The remap daemons map container root to host uid/gid $remap_start (user $remap_user, 65536 ids, from a" \
        "temporary BERTH_ETC_DIR); the layer mode is what \`berth info\` reports."
    echo
    echo "| daemon | layers | median | mean ± sd | / plain |"
    echo "|---|---|---|---|---|"
    echo "| berth | not remapped | $(ms "${med[berth]}") | $(ms "${mean[berth]}") ± $(ms "${sd[berth]}") | 1.00 |"
    for e in "${remap_list[@]}"; do
        echo "| berth $e | ${remap_mode[$e]} | $(ms "${med[$e]}") | $(ms "${mean[$e]}") ± $(ms "${sd[$e]}")" \
            "| **$(ratio "${med[$e]}" "${med[berth]}")** |"
    done
    echo
    echo "#### userns-remap: the first \`run --rm\` after \`rmi\` + \`import\`, and later runs (medians of" \
        "$first_runs runs)"
    echo
    echo "small: busybox + 1 file; large: busybox + $remap_files empty files. A shifted layer is chowned on its" \
        "first run, once; idmapped layers are used as they are."
    echo
    echo "| daemon | layers | image | first run | later runs | first / later | first / plain first |"
    echo "|---|---|---|---|---|---|---|"
    for e in berth "${remap_list[@]}"; do
        for img in small large; do
            echo "| $([[ $e == berth ]] && echo berth || echo "berth $e") | ${remap_mode[$e]:-not remapped} | $img | $(ms "${fmed[$e $img first]}")" \
                "| $(ms "${fmed[$e $img later]}") | $(ratio "${fmed[$e $img first]}" "${fmed[$e $img later]}")" \
                "| $(ratio "${fmed[$e $img first]}" "${fmed[berth $img first]}") |"
        done
    done
}

# --- 2. density ----------------------------------------------------------------------------------------------------

declare -A res=() # "<engine>,<n>,<field>"

# density ENGINE N: starts N detached sleep containers, measures, times ps, removes them.
density() {
    local e=$1 n=$2 i t0 t1 start end started=0 failure="" k dp rc
    local cli run_flags
    cli_of "$e"
    run_flags_of "$e"
    berth_log "$e: starting $n detached containers"
    read -r -a dp <<<"$(daemon_pids "$e")"
    read -r _ "res[$e,$n,d0_rss]" "res[$e,$n,d0_pss]" < <(mem "${dp[@]}")
    : >"$work/$e-$n.times"
    start=$EPOCHREALTIME
    for ((i = 1; i <= n; i++)); do
        t0=$EPOCHREALTIME
        rc=0
        timeout 120 "${cli[@]}" run -d "${run_flags[@]}" "$image" sleep 3600 </dev/null >/dev/null 2>"$work/err" ||
            rc=$?
        if ((rc)); then
            failure="container $i of $n failed to start (exit $rc$( ((rc == 124)) && echo ", timed out after 120 s")):"
            failure+=" $(tr '\n' ' ' <"$work/err")"
            break
        fi
        t1=$EPOCHREALTIME
        echo "$t0 $t1" >>"$work/$e-$n.times"
        started=$i
        ((i % 100 == 0)) && berth_log "$e: $i containers started"
    done
    end=$EPOCHREALTIME
    res[$e,$n,started]=$started
    res[$e,$n,failure]=$failure
    if [[ -n $failure ]]; then
        berth_log "$e: $failure"
        case $e in berth) res[$e,$n,log]=$(tail -n 15 "$work/berth/berthd.log") ;; docker) res[$e,$n,log]=$(tail -n 15 "$work/docker/dockerd.log") ;; esac
    fi
    res[$e,$n,wall]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    # Per-container start times (ms): mean, median, p90, max, and the mean of the first and of the last 10%.
    awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' "$work/$e-$n.times" >"$work/$e-$n.ms"
    if [[ -s $work/$e-$n.ms ]]; then
        read -r "res[$e,$n,first]" "res[$e,$n,last]" "res[$e,$n,mean]" < <(awk '
            { t[NR] = $1; s += $1 }
            END {
                k = int(NR / 10); if (k < 1) k = 1
                for (i = 1; i <= k; i++) { f += t[i]; l += t[NR - k + i] }
                printf "%.1f %.1f %.1f\n", f / k, l / k, s / NR
            }' "$work/$e-$n.ms")
        read -r "res[$e,$n,median]" "res[$e,$n,p90]" "res[$e,$n,max]" < <(sort -n "$work/$e-$n.ms" | awk '
            { t[NR] = $1 }
            END { p = int(NR * 0.9 + 0.5); if (p < 1) p = 1; printf "%.1f %.1f %.1f\n", t[int((NR + 1) / 2)], t[p], t[NR] }')
    fi
    sleep 2
    res[$e,$n,running]=$(timeout 120 "${cli[@]}" ps -q 2>/dev/null | wc -l)
    res[$e,$n,in_cgroups]=$(cgroup_procs "$cg_parent-$e" | wc -l)
    read -r _ "res[$e,$n,d_rss]" "res[$e,$n,d_pss]" < <(mem "${dp[@]}")
    mapfile -t k < <(per_container_pids "$e")
    read -r "res[$e,$n,procs]" "res[$e,$n,p_rss]" "res[$e,$n,p_pss]" < <(mem "${k[@]}")
    berth_log "$e: $started started in ${res[$e,$n,wall]} s; ${res[$e,$n,running]} running; per-container" \
        "processes ${res[$e,$n,procs]} (RSS ${res[$e,$n,p_rss]} kB, PSS ${res[$e,$n,p_pss]} kB)"
    if hyperfine -N --warmup 3 --runs 20 --export-json "$work/$e-$n-ps.json" -n "$e ps" "${cli[*]} ps" </dev/null \
        >"$work/$e-$n-ps.out" 2>&1; then
        res[$e,$n,ps]=$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$work/$e-$n-ps.json")
    else
        res[$e,$n,ps]=failed
        berth_log "$e ps failed under hyperfine: $(tail -5 "$work/$e-$n-ps.out")"
    fi
    berth_log "$e: ps median ${res[$e,$n,ps]} ms; removing the containers"
    res[$e,$n,rm]=$(remove_all "$e")
    res[$e,$n,left]=$(timeout 120 "${cli[@]}" ps -aq 2>/dev/null | wc -l)
    [[ ${res[$e,$n,left]} == 0 ]] || berth_log "$e: ${res[$e,$n,left]} containers left after rm -f"
}

density_list=("${engine_list[@]}")
[[ $only == remap ]] && density_list=() # --only remap: no density
for e in "${density_list[@]}"; do
    density "$e" "$count"
    if is_large "$e" && ((large_count != count)); then density "$e" "$large_count"; fi
    stop_engine "$e"
done

# --- results -------------------------------------------------------------------------------------------------------

per() { awk -v k="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f MB", k / n / 1024; else print "-" }'; }
per_kb() { awk -v k="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f kB", k / n; else print "-" }'; }
proc_name() { case $1 in berth) echo berth-monitor ;; docker) echo containerd-shim-runc-v2 ;; podman) echo conmon ;; esac; }
daemon_name() { case $1 in berth) echo berthd ;; docker) echo "dockerd + containerd" ;; podman) echo "(none)" ;; esac; }

stamp=$(date -u +%Y-%m-%dT%H%MZ)
if [[ $only == remap ]]; then
    stop_engine berth
    mkdir -p "$root_dir/bench/results"
    out="$root_dir/bench/results/run-remap-$stamp.txt"
    {
        echo "### Berth without and with userns-remap, $(date -u +%Y-%m-%d)"
        echo
        echo "Kernel \`$(uname -r)\`, $(nproc) CPUs; load average before/after: $load_before /" \
            "$(cut -d' ' -f1-3 /proc/loadavg) (\`bench/run.sh --only remap\`, $warmup warm-up runs, $runs runs);" \
            "berth $(version_of berth)."
        echo
        remap_report
        echo
        echo "Clean-up after each daemon: $(for e in berth "${remap_list[@]}"; do
            printf '%s: %s; ' "$e" "${cleanup_note[$e]:-?}"
        done)"
    } >"$out"
    echo
    cat "$out"
    berth_log "written to ${out#"$root_dir"/}"
    exit 0
fi
mkdir -p "$root_dir/bench/results"
out="$root_dir/bench/results/run-$stamp.txt"
{
    echo "### Whole engines: run --rm, and detached containers at scale, $(date -u +%Y-%m-%d)"
    echo
    echo "Kernel \`$(uname -r)\`, $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)" \
        "RAM; load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg) (\`bench/run.sh\`)."
    echo "Versions: $(for e in "${engine_list[@]}"; do printf '%s %s; ' "$e" "$(version_of "$e")"; done)docker" \
        "uses runc $(runc --version | awk 'NR == 1 { print $3 }'), podman crun $(crun --version | awk 'NR == 1 { print $3 }')."
    echo
    echo "#### \`run --rm --network none $image true\` (hyperfine, $warmup warm-up runs, $runs runs)"
    echo
    echo "| engine | median | mean ± sd |"
    echo "|---|---|---|"
    for e in "${engine_list[@]}"; do
        echo "| $e | $(ms "${med[$e]}") | $(ms "${mean[$e]}") ± $(ms "${sd[$e]}") |"
    done
    if has_engine berth; then
        for ref in docker podman; do
            has_engine "$ref" || continue
            echo "| **berth / $ref** | **$(ratio "${med[berth]}" "${med[$ref]}")** | |"
        done
    fi
    echo
    echo "#### Detached containers: \`run -d --network none $image sleep 3600\`, one after the other"
    echo
    echo "Start times are per \`run -d\` command (ms). Memory: VmRSS and Pss sums of the daemon and of the" \
        "per-container processes, read 2 s after the last start; the containers' own sleep processes are not counted."
    echo
    echo "| engine | N | started | running | wall, all | per container mean / median / p90 / max | first 10% / last 10% | \`ps\` median | rm -f all |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for e in "${engine_list[@]}"; do
        for n in "$count" "$large_count"; do
            [[ -n ${res[$e,$n,started]:-} ]] || continue
            echo "| $e | $n | ${res[$e,$n,started]} | ${res[$e,$n,running]} | ${res[$e,$n,wall]} s" \
                "| ${res[$e,$n,mean]} / ${res[$e,$n,median]} / ${res[$e,$n,p90]} / ${res[$e,$n,max]}" \
                "| ${res[$e,$n,first]} / ${res[$e,$n,last]} | ${res[$e,$n,ps]} ms | ${res[$e,$n,rm]} s |"
        done
    done
    echo
    echo "| engine | N | daemon | daemon RSS / PSS (before → after) | per-container process | count | RSS / PSS sum | RSS / PSS per container | (daemon + processes) / N, RSS / PSS |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for e in "${engine_list[@]}"; do
        for n in "$count" "$large_count"; do
            [[ -n ${res[$e,$n,started]:-} ]] || continue
            pn=${res[$e,$n,procs]}
            echo "| $e | $n | $(daemon_name "$e")" \
                "| $(mb "${res[$e,$n,d0_rss]}") / $(mb "${res[$e,$n,d0_pss]}") → $(mb "${res[$e,$n,d_rss]}") / $(mb "${res[$e,$n,d_pss]}")" \
                "| $(proc_name "$e") | $pn | $(mb "${res[$e,$n,p_rss]}") / $(mb "${res[$e,$n,p_pss]}")" \
                "| $(per_kb "${res[$e,$n,p_rss]}" "$pn") / $(per_kb "${res[$e,$n,p_pss]}" "$pn")" \
                "| $(per $((res[$e,$n,d_rss] + res[$e,$n,p_rss])) "${res[$e,$n,running]}") / $(per $((res[$e,$n,d_pss] + res[$e,$n,p_pss])) "${res[$e,$n,running]}") |"
        done
    done
    for e in "${engine_list[@]}"; do
        for n in "$count" "$large_count"; do
            [[ -n ${res[$e,$n,failure]:-} ]] || continue
            echo
            echo "**$e at $n failed**: ${res[$e,$n,failure]}"
            # shellcheck disable=SC2016 # markdown code fences, not expansions
            [[ -z ${res[$e,$n,log]:-} ]] || printf '\n```\n%s\n```\n' "${res[$e,$n,log]}"
        done
    done
    echo
    echo "Processes in the engine's cgroup parent after the starts (containers, plus conmon for podman): $(for e in "${engine_list[@]}"; do
        for n in "$count" "$large_count"; do
            [[ -n ${res[$e,$n,in_cgroups]:-} ]] && printf '%s@%s %s; ' "$e" "$n" "${res[$e,$n,in_cgroups]}"
        done
    done)"
    echo "Clean-up after each engine: $(for e in "${engine_list[@]}"; do printf '%s: %s; ' "$e" "${cleanup_note[$e]:-?}"; done)"
    echo "Not benchmarked at $large_count: $(for e in "${engine_list[@]}"; do is_large "$e" || printf '%s ' "$e"; done)(--large)."
} >"$out"
if has_remap; then
    {
        echo
        remap_report
        echo
        echo "Clean-up of the remap daemons: $(for e in "${remap_list[@]}"; do
            printf '%s: %s; ' "$e" "${cleanup_note[$e]:-?}"
        done)"
    } >>"$out"
fi
echo
cat "$out"
berth_log "written to ${out#"$root_dir"/}"
