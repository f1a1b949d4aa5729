//! Berth networking: address management and kernel links (bridge, veth) for containers.
//!
//! Address management (`pool`, `ipam`) dependencies:
//! - `serde` + `serde_json`: the per-network allocation table is a small JSON file, readable by
//!   people and written atomically (temporary file, fsync, rename, fsync of the directory).
//! - `rustix`: `flock` on a lock file serialises allocations between threads and processes, and
//!   `fsync` makes every table change durable before the address is handed out.
//! - `thiserror`: one error enum per module.

pub mod ipam;
pub mod link;
pub mod nat;
pub mod netns;
pub mod pool;
