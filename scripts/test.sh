#!/usr/bin/env bash
# The test command: everything CI runs (.ci/run calls exactly this).
#
#   sudo bash scripts/test.sh
#
# Runs as root (the integration tests make namespaces, mounts and containers) on a fresh Debian 12 machine:
# installs the system packages the tests and benchmarks need (scripts/lib.sh, BERTH_PACKAGES), then checks
# formatting, runs clippy with warnings denied, builds every target and runs the whole test suite. Stops at the first
# failing step and exits non-zero; prints a summary of the steps either way.
#
# Environment: BERTH_TEST_TIMEOUT (seconds, default 1200) bounds `cargo test`, so that a hung test fails the run
# instead of eating CI's time; extra arguments are passed to `cargo test` (e.g. a test name filter).
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root_dir/scripts/lib.sh"
cd "$root_dir"

berth_require_root scripts/test.sh
berth_ensure_packages "${BERTH_PACKAGES[@]}" shellcheck
berth_ensure_cargo
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

steps=()
failed=
started=$SECONDS
summary() {
    local rc=$?
    echo
    echo "---- scripts/test.sh summary ----"
    local s
    for s in "${steps[@]}"; do echo "  ok      $s"; done
    [[ -z $failed ]] || echo "  FAILED  $failed"
    echo "  total   $((SECONDS - started)) s"
    if ((rc == 0)); then echo "all steps passed"; else echo "test.sh failed (exit $rc)"; fi
}
trap summary EXIT

# step NAME CMD...: runs CMD, records how long it took; on failure records NAME and exits with CMD's status.
step() {
    local name=$1 t0=$SECONDS rc=0
    shift
    berth_log "$name: $*"
    "$@" || rc=$?
    if ((rc != 0)); then
        failed="$name ($((SECONDS - t0)) s, exit $rc)"
        exit "$rc"
    fi
    steps+=("$name ($((SECONDS - t0)) s)")
}

step "shellcheck" shellcheck -x scripts/*.sh bench/*.sh .ci/run
step "cargo fmt" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo build" cargo build --workspace --all-targets
# At a terminal, --foreground keeps Ctrl-C working; without one (CI), timeout kills the whole process group.
timeout=(timeout --kill-after=30)
[[ -t 0 ]] && timeout+=(--foreground)
step "cargo test" "${timeout[@]}" "${BERTH_TEST_TIMEOUT:-1200}" cargo test --workspace "$@"
