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

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

engines=berth,docker,podman
runs=30
warmup=5
build=1
bench_args --engines=engines --runs=runs --warmup=warmup --no-build:build=0 -- "$@"
bench_engines berth docker podman
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
if has_engine berth; then bench_build_workspace; fi

bench_engine_work net
bench_checked="container, daemon, per-container process, mount, cgroup or namespace"
ns_prefix="berth-bench-$$"
declare -A made_ns=() # engine -> 1 once its namespace exists

ns_of() { echo "$ns_prefix-$1"; }
# in_ns ENGINE: the command prefix that runs a program in the engine's network namespace (and nothing else).
in_ns() { in_ns=(nsenter "--net=/run/netns/$(ns_of "$1")" --); }
# The engines were started if their namespace was made (bench/lib.sh stops them).
engine_started() { [[ -n ${made_ns[$1]:-} ]]; }
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

# --- processes and namespaces (the rest is in bench/lib.sh) --------------------------------------------------------

# The network namespaces mounted under /run/netns (podman's rootful containers' namespaces live there too).
netns_files() { find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort || true; }
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
start_berth() { start_berthd berth; }
# Docker's network defaults: bridge docker0, iptables, ip-forward, ip-masq, userland proxy (no network flags).
# shellcheck disable=SC2119
start_docker() { start_dockerd; }

# engine_stopped ENGINE (the end of stop_engine's clean-up check): nothing else may live in the engine's namespace
# any more; then it goes, and with it the bridge, rules and forwarding.
engine_stopped() {
    local ns m p
    ns=$(ns_of "$1")
    mapfile -t m < <(pids_in_ns "$1")
    if ((${#m[@]})); then
        left+=("${#m[@]} processes in $ns (killed): $(for p in "${m[@]}"; do cat "/proc/$p/comm" 2>/dev/null; done | tr '\n' ' ')")
        for p in "${m[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.5
    fi
    ip netns delete "$ns" 2>/dev/null || left+=("could not delete the namespace $ns")
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
    remove_work
    if ((!cni_before)) && [[ -d /var/lib/cni ]]; then
        # podman's CNI backend keeps its cache and host-local leases there; it did not exist before the run.
        rm -rf /var/lib/cni
    fi
    hugetlb_restore
}
trap cleanup EXIT

# --- set-up ------------------------------------------------------------------------------------------------------

# crun and hybrid cgroups (see the header and bench/lib.sh), as bench/run.sh.
if has_engine podman; then hugetlb_for_crun; fi

bench_busybox_tar

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

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- timing ----------------------------------------------------------------------------------------------------------

args=()
for r in "${rows[@]}"; do args+=(-n "$r" "$(row_cmd "$r")"); done
berth_log "timing: run --rm $image true on each engine's default network (and berth on --network none)"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/run.json" "${args[@]}" </dev/null
declare -A med=() mean=() sd=()
read_stats "$work/run.json" "${rows[@]}"
for e in "${engine_list[@]}"; do
    cli_of "$e"
    [[ -z $("${cli[@]}" ps -aq) ]] || berth_die "$e: run --rm left containers behind during the timing"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
versions=$(for e in "${engine_list[@]}"; do printf '%s %s; ' "$e" "$(version_of "$e")"; done)
for e in "${engine_list[@]}"; do stop_engine "$e"; done
host_after=$(host_net_state)

# --- results -------------------------------------------------------------------------------------------------------

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
