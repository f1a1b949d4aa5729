# shellcheck shell=bash
# Helpers shared by scripts/quickstart.sh, scripts/test.sh and bench/runtime.sh. Source it; do not run it.
#
# Everything here is idempotent: running a script twice on the same machine does the work once.

# The Debian packages the tests and benchmarks need. One array, so that an issue that needs another package adds
# one line here.
# shellcheck disable=SC2034 # used by the scripts that source this file
BERTH_PACKAGES=(
    build-essential # cc as the linker; libc.a for the static (+crt-static) binaries
    pkg-config
    libseccomp-dev # libseccomp.a, for the runtime's seccomp filters
    busybox-static # the rootfs of every test and demo bundle
    runc           # reference runtime: the tests and benchmarks compare against it
    crun           # reference runtime, the one to beat
    hyperfine      # bench/runtime.sh
    tini           # bench/runtime.sh: a subreaper that reaps exited container inits at once
    containerd     # crates/berth-runtime/tests/peers.rs: ctr run --runc-binary berth-runtime
    podman         # tests/peers.rs: podman --runtime berth-runtime (pulls conmon, containers-common)
    docker.io      # tests/peers.rs: dockerd --add-runtime berth=berth-runtime
    jq
    python3-venv # crates/berthd/tests/docker_py.rs: docker-py and pytest from PyPI in a virtualenv
    iproute2
    nftables     # crates/berth-net: NAT and published-port rules, tested inside test namespaces
    util-linux
    procps
    docker-registry # crates/berth-image tests: a real registry on 127.0.0.1 (berth_test_support::registry)
    skopeo          # bench/pull.sh; image fixtures can be copied into the test registry with it
    debootstrap     # the cached Debian bookworm minbase image of the registry tests
    python3-docker  # crates/berthd/tests/images.rs: docker-py against berthd
    docker-compose  # crates/berthd/tests/compose.rs: docker-compose 1.29 against berthd
    openssl         # crates/berthd/tests/daemon.rs: a CA, server and client certificates for the TLS test
)

berth_log() { printf '==> %s\n' "$*" >&2; }
berth_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

berth_repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

berth_require_root() {
    [[ $(id -u) -eq 0 ]] || berth_die "$1 must run as root (try: sudo bash $1)"
}

# berth_ensure_packages PKG...: installs those of the given packages that are not installed yet. Runs
# `apt-get update` only when something is missing, so a machine that has everything makes no network request.
berth_ensure_packages() {
    local missing=() p status
    for p in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ $status == installed ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    berth_log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

# Puts cargo on PATH (sudo and CI may start without ~/.cargo/bin on it) and fails clearly if there is none.
berth_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local d
        for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
            if [[ -x $d/cargo ]]; then
                PATH="$d:$PATH"
                export PATH
                break
            fi
        done
    fi
    command -v cargo >/dev/null 2>&1 ||
        berth_die "cargo is not installed: install Rust $(berth_rust_version) with rustup (components rustfmt, clippy)"
}

berth_rust_version() { sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(berth_repo_root)/Cargo.toml"; }

# Where the workspace puts binaries: .cargo/config.toml names the target explicitly (for +crt-static).
berth_target_dir() {
    local profile=$1
    echo "${CARGO_TARGET_DIR:-$(berth_repo_root)/target}/x86_64-unknown-linux-gnu/$profile"
}

# Cache outside the clone: bundles survive a fresh clone and never end up in git.
berth_cache_dir() { echo "${XDG_CACHE_HOME:-$HOME/.cache}/berth"; }

# berth_busybox_rootfs DIR: makes DIR a busybox root filesystem (static /bin/busybox plus one symlink per applet),
# unless DIR already holds one made from the same busybox binary. Safe to call from two scripts at once.
berth_busybox_rootfs() {
    local dir=$1 busybox=/bin/busybox stamp tmp applet
    [[ -x $busybox ]] || berth_die "$busybox is missing (install busybox-static)"
    stamp="$(sha256sum "$busybox" | cut -d' ' -f1)"
    mkdir -p "$(dirname "$dir")"
    (
        flock 9
        [[ -f $dir/.berth-rootfs && $(cat "$dir/.berth-rootfs") == "$stamp" ]] && exit 0
        tmp=$(mktemp -d "$dir.tmp.XXXXXX")
        mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run,var}
        chmod 1777 "$tmp/tmp"
        cp "$busybox" "$tmp/bin/busybox"
        while read -r applet; do
            [[ $applet == bin/busybox ]] && continue
            mkdir -p "$tmp/$(dirname "$applet")"
            ln -sf /bin/busybox "$tmp/$applet"
        done < <("$busybox" --list-full)
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
        echo "$stamp" >"$tmp/.berth-rootfs"
        rm -rf "$dir"
        mv "$tmp" "$dir"
    ) 9>"$dir.lock"
}
