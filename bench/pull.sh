#!/usr/bin/env bash
# Pull time of the Debian and busybox images from a local registry: Berth beside docker, podman and the floors.
#
#   sudo bash bench/pull.sh [--engines berth,docker,podman,skopeo,tar] [--runs 3] [--no-build]
#
# A private `docker-registry` on 127.0.0.1 serves both images (pushed once with podman from the Debian minbase
# rootfs the tests cache and from the distribution's busybox). Every timed pull goes into an empty store on a fresh
# journaled ext4 loop device, made and mounted before the timer starts: this VM's root ext4 has no journal, and after
# mass deletion it creates files 5-15x slower for minutes, which would measure the filesystem, not the engine.
#   berth   `berth pull` against a private berthd whose data root is on the loop device
#   docker  `docker pull` against a private dockerd (overlay2 on the loop device, on a private containerd)
#   podman  `podman pull` with --root on the loop device (overlay)
#   skopeo  `skopeo copy docker://… dir:…`: fetching and verifying the blobs, no unpacking (the fetch floor)
#   tar     `tar -x` of the uncompressed Debian layer onto the loop device (the unpack floor)
# Prints medians per engine and image, the ratio Berth/docker, and Berth against skopeo + tar, and writes the table to
# bench/results/pull-<date>.md.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root_dir/scripts/lib.sh"

engines=berth,docker,podman,skopeo,tar
runs=3
build=1
while (($#)); do
    case $1 in
    --engines) engines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) berth_die "unknown argument $1 (see --help)" ;;
    esac
done
IFS=, read -r -a engine_list <<<"$engines"
berth_require_root bench/pull.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}"
if ((build)) && [[ ,$engines, == *,berth,* ]]; then
    berth_ensure_cargo
    (cd "$root_dir" && cargo build --release -p berthd -p berth)
fi
bin=$(berth_target_dir release)

work=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
pids=()
mnt=""
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ -z $mnt ]] || unmount_store
    rm -rf "$work"
}
trap cleanup EXIT

# The registry, on a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.1; done
curl -sf "http://$reg/v2/" >/dev/null || berth_die "the registry did not start: $(cat "$work/registry.log")"

# The images. Debian: the minbase rootfs the tests build (cached outside the clone); made here if absent.
cache=$(berth_cache_dir)
debian_tar="$cache/debian-bookworm-minbase.tar"
if [[ ! -s $debian_tar ]]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    berth_log "building the Debian minbase rootfs with debootstrap (once; cached in $debian_tar)"
    debootstrap --variant=minbase bookworm "$work/debian" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log"
    rm -rf "$work/debian/var/cache/apt/archives/"*.deb "$work/debian/var/lib/apt/lists/"*
    tar -C "$work/debian" -cf "$debian_tar.tmp" . && mv "$debian_tar.tmp" "$debian_tar"
fi
busybox_rootfs="$cache/bundles/busybox/rootfs"
berth_busybox_rootfs "$busybox_rootfs"
tar -C "$busybox_rootfs" -cf "$work/busybox.tar" .
seed=(podman --root "$work/seed" --runroot "$work/seed-run" --storage-driver vfs)
"${seed[@]}" import "$debian_tar" "$reg/debian:bench" >/dev/null
"${seed[@]}" import "$work/busybox.tar" "$reg/busybox:bench" >/dev/null
for image in debian busybox; do
    "${seed[@]}" push --tls-verify=false "$reg/$image:bench" >/dev/null 2>&1 || berth_die "pushing $image failed"
done
"${seed[@]}" system reset -f >/dev/null 2>&1 || true
rm -rf "$work/seed" "$work/seed-run"

# A fresh journaled ext4 for every timed pull.
mount_store() {
    mnt="$work/store"
    mkdir -p "$mnt"
    truncate -s 8G "$work/store.img"
    mkfs.ext4 -q -F "$work/store.img"
    mount -o loop "$work/store.img" "$mnt"
}
unmount_store() {
    umount -R "$mnt" 2>/dev/null || umount -l "$mnt"
    rm -f "$work/store.img"
    mnt=""
}

now() { date +%s%N; }

# pull_once ENGINE IMAGE: prints the pull's wall time in milliseconds (daemons are started before the timer).
pull_once() {
    local e=$1 image=$2 ref="$reg/$2:bench" t0 t1 d
    mount_store
    case $e in
    berth)
        "$bin/berthd" --data-root "$mnt/berth" -H "unix://$work/berth.sock" --pidfile "$work/berthd.pid" \
            --insecure-registry "$reg" >"$work/berthd.log" 2>&1 &
        d=$!
        for _ in $(seq 100); do "$bin/berth" -H "unix://$work/berth.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
        t0=$(now)
        "$bin/berth" -H "unix://$work/berth.sock" pull "$ref" >/dev/null
        t1=$(now)
        kill "$d"; wait "$d" || true
        ;;
    docker)
        mkdir -p "$mnt/ctd"
        printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' \
            "$mnt/ctd" "$work" "$work" "$mnt/ctd" >"$work/containerd.toml"
        containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
        local c=$!
        echo "{\"deprecated-key-path\": \"$work/key.json\"}" >"$work/daemon.json"
        dockerd --config-file "$work/daemon.json" --data-root "$mnt/docker" --exec-root "$work/dexec" \
            --pidfile "$work/docker.pid" -H "unix://$work/docker.sock" --containerd "$work/c.sock" \
            --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
            --storage-driver overlay2 --insecure-registry "$reg" >"$work/dockerd.log" 2>&1 &
        d=$!
        for _ in $(seq 200); do docker -H "unix://$work/docker.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
        t0=$(now)
        docker -H "unix://$work/docker.sock" pull -q "$ref" >/dev/null
        t1=$(now)
        kill "$d"; wait "$d" || true
        kill "$c"; wait "$c" || true
        ;;
    podman)
        t0=$(now)
        podman --root "$mnt/podman" --runroot "$work/podman-run" --storage-driver overlay \
            pull -q --tls-verify=false "$ref" >/dev/null
        t1=$(now)
        ;;
    skopeo)
        t0=$(now)
        skopeo copy -q --src-tls-verify=false "docker://$ref" "dir:$mnt/skopeo"
        t1=$(now)
        ;;
    tar)
        local src=$debian_tar
        [[ $image == busybox ]] && src=$work/busybox.tar
        mkdir -p "$mnt/tar"
        t0=$(now)
        tar -C "$mnt/tar" -xf "$src"
        t1=$(now)
        ;;
    esac
    unmount_store
    echo $(((t1 - t0) / 1000000))
}

declare -A med
for image in debian busybox; do
    for e in "${engine_list[@]}"; do
        samples=()
        for _ in $(seq "$runs"); do samples+=("$(pull_once "$e" "$image")"); done
        med[$e,$image]=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        berth_log "$image $e: ${samples[*]} ms (median ${med[$e,$image]} ms)"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$root_dir/bench/results"
out="$root_dir/bench/results/pull-$stamp.md"
{
    echo "### Image pull from a local registry, $(date -u +%Y-%m-%d)"
    echo
    echo "Kernel \`$(uname -r)\`, $(nproc) CPUs; each pull into an empty store on a fresh journaled ext4 loop device;" \
        "median of $runs (\`bench/pull.sh\`)."
    echo
    echo "| engine | Debian (1 layer, 128 MB) | busybox |"
    echo "|---|---|---|"
    for e in "${engine_list[@]}"; do echo "| $e | ${med[$e,debian]} ms | ${med[$e,busybox]} ms |"; done
    if [[ -n ${med[berth,debian]:-} && -n ${med[docker,debian]:-} ]]; then
        echo "| **Berth / docker** | $(ratio "${med[berth,debian]}" "${med[docker,debian]}") | $(ratio "${med[berth,busybox]}" "${med[docker,busybox]}") |"
    fi
    if [[ -n ${med[berth,debian]:-} && -n ${med[skopeo,debian]:-} && -n ${med[tar,debian]:-} ]]; then
        floor=$((med[skopeo,debian] + med[tar,debian]))
        echo "| **Berth / (skopeo + tar)** | $(ratio "${med[berth,debian]}" "$floor") | |"
    fi
} >"$out"
echo
cat "$out"
berth_log "written to ${out#"$root_dir"/}"
