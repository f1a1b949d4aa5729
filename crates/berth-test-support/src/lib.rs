//! Test fixtures for the runtime's integration tests.
//!
//! - [`Bundle`]: an OCI bundle with a busybox rootfs and `/bin/berth-check`, in a temporary directory, with the
//!   spec `berth-runtime spec` writes; removed on drop (mounts left under it are detached first, never deleted
//!   through).
//! - [`Runtime`]: `berth-runtime` with a private `--root`; commands time out instead of hanging; on drop every
//!   container is deleted with `--force`, leftover processes are killed, the root is removed.
//! - [`runtime_bin`] / [`check_bin`]: the binaries next to the test executable (`BERTH_RUNTIME`, `BERTH_CHECK`
//!   override). `cargo test -p berth-runtime` does not build `berth-check`: run `cargo build` first.
//! - [`CheckReport`] and [`parse_report`]: what `berth-check` sees inside the container.
//! - [`LeakProbe`]: mounts, processes and root entries with a test's unique names, to assert nothing is left.
//! - [`unique_id`]: names unique across threads and processes.

pub mod bins;
pub mod bundle;
pub mod cleanup;
pub mod ids;
pub mod leaks;
pub mod registry;
pub mod report;
pub mod runtime;

pub use bins::{check_bin, runtime_bin};
pub use bundle::{Bundle, BundleError, error_chain};
pub use ids::unique_id;
pub use leaks::{LeakProbe, LeakSnapshot, ProcessEntry};
pub use report::{CheckReport, parse_fds, parse_report, parse_write_outcome};
pub use runtime::{ProcessMark, Runtime, RuntimeError, assert_success};
