//! Snapshots of host kernel objects that belong to one test, to assert that nothing is left behind.

use std::path::{Path, PathBuf};

use crate::cleanup::CleanupError;

/// A process found by its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    /// The pid.
    pub pid: i32,
    /// The command line, arguments joined with spaces.
    pub cmdline: String,
}

/// What to look for: mounts under some paths, processes whose command line contains some strings, entries in
/// some `--root` directories. Use names unique to the test (see [`crate::unique_id`]) so that parallel tests do
/// not see each other's objects.
#[derive(Debug, Clone, Default)]
pub struct LeakProbe {
    mount_prefixes: Vec<PathBuf>,
    cmdline_needles: Vec<String>,
    roots: Vec<PathBuf>,
}

/// What a [`LeakProbe`] found at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakSnapshot {
    /// Mount points (in this process's mount namespace) under one of the prefixes.
    pub mounts: Vec<PathBuf>,
    /// Processes (other than this one) whose command line contains one of the strings.
    pub processes: Vec<ProcessEntry>,
    /// Entries of the root directories.
    pub root_entries: Vec<PathBuf>,
}

impl LeakProbe {
    /// An empty probe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also count mounts at or under `prefix` (a path, compared component by component).
    pub fn mounts_under(mut self, prefix: impl Into<PathBuf>) -> Self {
        let prefix = prefix.into();
        // Mountinfo shows resolved paths; resolve the prefix the same way when it exists (/tmp may be a link).
        self.mount_prefixes.push(prefix.canonicalize().unwrap_or(prefix));
        self
    }

    /// Also count processes whose command line contains `needle`.
    pub fn processes_with(mut self, needle: impl Into<String>) -> Self {
        self.cmdline_needles.push(needle.into());
        self
    }

    /// Also count entries in the runtime root `root` (a missing root has none).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.roots.push(root.into());
        self
    }

    /// Looks now.
    pub fn snapshot(&self) -> Result<LeakSnapshot, CleanupError> {
        let mut snapshot = LeakSnapshot::default();
        if !self.mount_prefixes.is_empty() {
            let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CleanupError::MountInfo)?;
            let mounts = berth_check::probe::parse_mountinfo(&text).map_err(CleanupError::MountInfoFormat)?;
            snapshot.mounts = mounts
                .into_iter()
                .map(|m| PathBuf::from(m.mount_point))
                .filter(|p| self.mount_prefixes.iter().any(|prefix| p.starts_with(prefix)))
                .collect();
        }
        if !self.cmdline_needles.is_empty() {
            snapshot.processes = processes_matching(&self.cmdline_needles);
        }
        for root in &self.roots {
            if let Ok(entries) = std::fs::read_dir(root) {
                snapshot
                    .root_entries
                    .extend(entries.filter_map(|e| Some(e.ok()?.path())));
            }
        }
        snapshot.root_entries.sort();
        Ok(snapshot)
    }

    /// Looks now.
    ///
    /// # Panics
    /// When the mount table cannot be read.
    pub fn take(&self) -> LeakSnapshot {
        self.snapshot()
            .unwrap_or_else(|e| panic!("{}", crate::bundle::error_chain(&e)))
    }

    /// Polls until nothing is found, for at most `timeout` (processes take a moment to go after a kill).
    ///
    /// # Panics
    /// When something is still there after `timeout`, listing it.
    pub fn assert_clean_within(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let snapshot = self.take();
            if snapshot.is_clean() {
                return;
            }
            if std::time::Instant::now() >= deadline {
                panic!("left behind after {timeout:?}: {snapshot:#?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl LeakSnapshot {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.mounts.is_empty() && self.processes.is_empty() && self.root_entries.is_empty()
    }

    /// Panics unless nothing was found, listing what was.
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "left behind: {self:#?}");
    }
}

/// Processes other than this one whose command line contains one of `needles`. Kernel threads and zombies have
/// an empty command line and never match.
fn processes_matching(needles: &[String]) -> Vec<ProcessEntry> {
    let own = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcessEntry> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid: i32 = name.parse().ok()?;
            if name == own {
                return None;
            }
            let raw = std::fs::read(Path::new("/proc").join(&name).join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .replace('\0', " ");
            needles
                .iter()
                .any(|n| cmdline.contains(n.as_str()))
                .then_some(ProcessEntry { pid, cmdline })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::{make_temp_dir, remove_tree};
    use crate::ids::unique_id;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn finds_a_process_by_a_unique_argument_and_sees_it_go() {
        let tag = unique_id("leak-probe");
        let probe = LeakProbe::new().processes_with(&tag);
        probe.take().assert_clean();
        // berth-check ignores the words after the sleep time: they are there to be found.
        let mut child = Command::new(crate::check_bin())
            .args(["sleep", "30", &tag])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Right after spawn the child may not have executed yet (its cmdline is still ours): wait for the exec.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut snapshot = probe.take();
        while snapshot.processes.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            snapshot = probe.take();
        }
        let kill_result = child.kill();
        let _ = child.wait();
        kill_result.unwrap();
        assert_eq!(snapshot.processes.len(), 1, "{snapshot:?}");
        assert_eq!(snapshot.processes[0].pid, pid);
        assert!(snapshot.processes[0].cmdline.ends_with(&tag));
        assert!(!snapshot.is_clean());
        probe.assert_clean_within(Duration::from_secs(5));
    }

    #[test]
    fn counts_root_entries() {
        let root = make_temp_dir("berth-leak-root-").unwrap();
        let probe = LeakProbe::new().root(&root).root(root.join("missing"));
        probe.take().assert_clean();
        std::fs::create_dir(root.join("container-a")).unwrap();
        let snapshot = probe.take();
        remove_tree(&root).unwrap();
        assert_eq!(snapshot.root_entries, [root.join("container-a")]);
        probe.take().assert_clean();
    }

    #[test]
    fn counts_mounts_under_a_prefix() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        struct Guard(PathBuf);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = remove_tree(&self.0);
            }
        }
        let dir = make_temp_dir("berth-leak-mounts-").unwrap();
        let _guard = Guard(dir.clone());
        let probe = LeakProbe::new().mounts_under(&dir);
        probe.take().assert_clean();
        let target = dir.join("m");
        std::fs::create_dir(&target).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &target,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        let snapshot = probe.take();
        rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert_eq!(snapshot.mounts, [target.canonicalize().unwrap()]);
        probe.take().assert_clean();
        // A sibling with the same string prefix is not "under" the directory.
        let sibling = LeakProbe::new().mounts_under(format!("{}-other", dir.display()));
        sibling.take().assert_clean();
    }
}
