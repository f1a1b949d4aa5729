//! Names that do not collide between tests running in parallel threads or processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<prefix>-<pid>-<counter>-<time>`: unique across the threads of this process (counter), across processes
/// running at the same time (pid) and across processes that reuse a pid (time, in hex nanoseconds). Only
/// `[A-Za-z0-9-]` are added, so the id is valid for runc's `^[\w+-\.]+$` whenever the prefix is.
pub fn unique_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // The low 40 bits of the time in nanoseconds wrap every ~18 minutes: enough to tell apart two processes
    // that got the same pid.
    let time = nanos & 0xff_ffff_ffff;
    format!("{prefix}-{}-{n}-{time:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..500).map(|_| unique_id("t")).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for id in handle.join().unwrap() {
                assert!(seen.insert(id.clone()), "duplicate id {id}");
            }
        }
        assert_eq!(seen.len(), 4000);
    }

    #[test]
    fn ids_have_the_prefix_and_only_safe_characters() {
        let id = unique_id("berth.test");
        assert!(
            id.starts_with(&format!("berth.test-{}-", std::process::id())),
            "{id}"
        );
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "{id}"
        );
    }
}
