//! OCI bundles with a busybox rootfs and the `berth-check` binary, in fresh temporary directories.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use oci_spec::runtime::Spec;
use thiserror::Error;

use crate::bins::{BinError, CHECK_ENV, locate};
use crate::cleanup::{make_temp_dir, remove_tree};

/// The host's static busybox (Debian's `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Where the check binary is inside the rootfs.
pub const CHECK_IN_ROOTFS: &str = "/bin/berth-check";

/// Directories every bundle's rootfs has, with their modes.
const ROOTFS_DIRS: [(&str, u32); 14] = [
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("etc", 0o755),
    ("root", 0o700),
    ("run", 0o755),
    ("var", 0o755),
    ("home", 0o755),
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nnobody:x:65534:\n";

/// Why a bundle could not be built or written.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The temporary directory could not be created.
    #[error("could not create a temporary directory for a bundle")]
    TempDir(#[source] std::io::Error),
    /// A file or directory of the bundle could not be made.
    #[error("could not create {path}")]
    Create {
        /// What was being created.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be copied into the rootfs.
    #[error("could not copy {from} to {to}")]
    Copy {
        /// The source.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `busybox --list-full` could not be run or failed.
    #[error("could not list the applets of {HOST_BUSYBOX} (is busybox-static installed?): {0}")]
    Applets(String),
    /// The check binary is missing.
    #[error(transparent)]
    Bin(#[from] BinError),
    /// config.json could not be serialized.
    #[error("could not serialize the spec")]
    Serialize(#[source] serde_json::Error),
}

/// The applet paths `busybox --list-full` prints (`bin/sh`, `usr/bin/env`, ...), read once per process.
pub fn busybox_applets() -> Result<&'static [PathBuf], BundleError> {
    static APPLETS: OnceLock<Result<Vec<PathBuf>, String>> = OnceLock::new();
    let applets = APPLETS.get_or_init(|| {
        let out = Command::new(HOST_BUSYBOX)
            .arg("--list-full")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "it exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text =
            String::from_utf8(out.stdout).map_err(|e| format!("it printed something not UTF-8: {e}"))?;
        let applets: Vec<PathBuf> = text
            .lines()
            .map(|l| PathBuf::from(l.trim()))
            .filter(|p| {
                // Only plain relative paths, so a link can never land outside the rootfs.
                !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
            })
            .filter(|p| p != Path::new("bin/busybox"))
            .collect();
        if applets.is_empty() {
            Err("it listed no applets".to_string())
        } else {
            Ok(applets)
        }
    });
    applets.as_deref().map_err(|e| BundleError::Applets(e.clone()))
}

/// An OCI bundle in a temporary directory, removed on drop.
///
/// The spec starts as [`berth_oci::spec::default_spec`] (what `berth-runtime spec` writes). Change it through
/// [`Bundle::spec_mut`] or the setters, then [`Bundle::write_config`] (the [`crate::Runtime`] helpers that take a
/// bundle write it for you).
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
    spec: Spec,
}

fn create_dir(path: &Path, mode: u32) -> Result<(), BundleError> {
    let create = |source| BundleError::Create {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path).map_err(create)?;
    // Set explicitly: the umask would otherwise clear bits (tmp's sticky 1777).
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(create)
}

fn copy_file(from: &Path, to: &Path) -> Result<(), BundleError> {
    fs::copy(from, to).map_err(|source| BundleError::Copy {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(|source| BundleError::Create {
        path: to.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &str) -> Result<(), BundleError> {
    fs::write(path, contents).map_err(|source| BundleError::Create {
        path: path.to_path_buf(),
        source,
    })
}

impl Bundle {
    /// Builds a busybox bundle; see [`Bundle::busybox`].
    pub fn try_busybox() -> Result<Self, BundleError> {
        let check = locate("berth-check", CHECK_ENV)?;
        let applets = busybox_applets()?;
        let dir = make_temp_dir("berth-bundle-").map_err(BundleError::TempDir)?;
        // From here on the directory is removed by Drop if anything fails.
        let bundle = Bundle {
            dir,
            spec: berth_oci::spec::default_spec(),
        };
        let rootfs = bundle.rootfs();
        create_dir(&rootfs, 0o755)?;
        for (sub, mode) in ROOTFS_DIRS {
            create_dir(&rootfs.join(sub), mode)?;
        }
        let busybox = rootfs.join("bin/busybox");
        copy_file(Path::new(HOST_BUSYBOX), &busybox)?;
        for applet in applets {
            let link = rootfs.join(applet);
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent).map_err(|source| BundleError::Create {
                    path: parent.into(),
                    source,
                })?;
            }
            // Hard links to the rootfs's own copy: the same inode inside and outside the container, never the
            // host's /bin/busybox.
            fs::hard_link(&busybox, &link).map_err(|source| BundleError::Create {
                path: link.clone(),
                source,
            })?;
        }
        copy_file(&check, &rootfs.join(CHECK_IN_ROOTFS.trim_start_matches('/')))?;
        write_file(&rootfs.join("etc/passwd"), PASSWD)?;
        write_file(&rootfs.join("etc/group"), GROUP)?;
        bundle.try_write_config()?;
        Ok(bundle)
    }

    /// A fresh bundle: `rootfs/` with busybox and its applet links, `bin/berth-check`, the usual directories,
    /// `etc/passwd` and `etc/group` (root, nobody); `config.json` holding the default spec.
    ///
    /// # Panics
    /// When the bundle cannot be built (busybox or berth-check missing, disk full, ...).
    pub fn busybox() -> Self {
        Self::try_busybox()
            .unwrap_or_else(|e| panic!("could not build a busybox bundle: {}", error_chain(&e)))
    }

    /// The bundle directory (what `--bundle` takes).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The spec as it will be written.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The spec, to change; call [`Bundle::write_config`] afterwards.
    pub fn spec_mut(&mut self) -> &mut Spec {
        &mut self.spec
    }

    /// Writes the spec to `config.json`.
    pub fn try_write_config(&self) -> Result<(), BundleError> {
        let json = serde_json::to_vec_pretty(&self.spec).map_err(BundleError::Serialize)?;
        let path = self.config_path();
        fs::write(&path, json).map_err(|source| BundleError::Create { path, source })
    }

    /// Writes the spec to `config.json`.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_config(&self) {
        self.try_write_config()
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    }

    /// `process` of the spec, created with oci-spec's defaults if the spec has none.
    pub fn process_mut(&mut self) -> &mut oci_spec::runtime::Process {
        self.spec.process_mut().get_or_insert_with(Default::default)
    }

    /// Sets `process.args`.
    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.process_mut()
            .set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Sets `process.terminal`.
    pub fn set_terminal(&mut self, terminal: bool) -> &mut Self {
        self.process_mut().set_terminal(Some(terminal));
        self
    }

    /// Adds `NAME=value` entries to `process.env` (after the defaults).
    pub fn add_env(&mut self, entries: &[&str]) -> &mut Self {
        let env = self.process_mut().env_mut().get_or_insert_with(Vec::new);
        env.extend(entries.iter().map(|e| e.to_string()));
        self
    }

    /// Sets `root.readonly`.
    pub fn set_readonly_root(&mut self, readonly: bool) -> &mut Self {
        if let Some(root) = self.spec.root_mut() {
            root.set_readonly(Some(readonly));
        }
        self
    }

    /// Runs `/bin/berth-check <args>` without a terminal, so that its JSON goes to the runtime's stdout.
    pub fn set_check_args(&mut self, args: &[&str]) -> &mut Self {
        let mut all = vec![CHECK_IN_ROOTFS];
        all.extend_from_slice(args);
        self.set_args(&all).set_terminal(false)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!(
                "berth-test-support: could not remove bundle {}: {}",
                self.dir.display(),
                error_chain(&e)
            );
        }
    }
}

/// The error and its sources, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn busybox_bundle_layout() {
        let bundle = Bundle::busybox();
        let rootfs = bundle.rootfs();
        assert_eq!(rootfs, bundle.path().join("rootfs"));
        for (sub, mode) in ROOTFS_DIRS {
            let meta = fs::metadata(rootfs.join(sub)).unwrap();
            assert!(meta.is_dir(), "{sub}");
            assert_eq!(meta.mode() & 0o7777, mode, "{sub}");
        }
        let busybox = fs::metadata(rootfs.join("bin/busybox")).unwrap();
        assert_eq!(busybox.len(), fs::metadata(HOST_BUSYBOX).unwrap().len());
        assert_ne!(
            busybox.ino(),
            fs::metadata(HOST_BUSYBOX).unwrap().ino(),
            "a copy, not the host's file"
        );
        let check = fs::metadata(rootfs.join("bin/berth-check")).unwrap();
        assert_eq!(check.len(), fs::metadata(crate::check_bin()).unwrap().len());
        assert_eq!(check.mode() & 0o111, 0o111);
        assert!(
            fs::read_to_string(rootfs.join("etc/passwd"))
                .unwrap()
                .starts_with("root:x:0:0:")
        );
        assert!(
            fs::read_to_string(rootfs.join("etc/group"))
                .unwrap()
                .contains("nobody:x:65534:")
        );

        let written: Spec = serde_json::from_slice(&fs::read(bundle.config_path()).unwrap()).unwrap();
        assert_eq!(&written, bundle.spec());
        assert_eq!(written, berth_oci::spec::default_spec());
        assert_eq!(written.root().as_ref().unwrap().path(), Path::new("rootfs"));
    }

    #[test]
    fn applets_are_hard_links_to_the_rootfs_busybox() {
        let bundle = Bundle::busybox();
        let rootfs = bundle.rootfs();
        let busybox_ino = fs::metadata(rootfs.join("bin/busybox")).unwrap().ino();
        let applets = busybox_applets().unwrap();
        for wanted in ["bin/sh", "usr/bin/env", "bin/sleep", "bin/cat", "bin/ls"] {
            assert!(
                applets.iter().any(|a| a == Path::new(wanted)),
                "{wanted} not an applet"
            );
        }
        for applet in applets {
            let meta = fs::symlink_metadata(rootfs.join(applet)).unwrap();
            assert_eq!(meta.ino(), busybox_ino, "{}", applet.display());
        }
        // The links work: the rootfs's sh runs (on the host, by path).
        let out = Command::new(rootfs.join("bin/sh"))
            .args(["-c", "echo $((6 * 7))"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    }

    #[test]
    fn spec_changes_reach_config_json_and_drop_removes_the_bundle() {
        let mut bundle = Bundle::busybox();
        bundle
            .set_check_args(&["write", "/tmp/x"])
            .add_env(&["A=b"])
            .set_readonly_root(false);
        bundle.spec_mut().set_hostname(Some("changed".into()));
        bundle.write_config();
        let written: Spec = serde_json::from_slice(&fs::read(bundle.config_path()).unwrap()).unwrap();
        let process = written.process().as_ref().unwrap();
        assert_eq!(
            process.args().as_ref().unwrap(),
            &["/bin/berth-check", "write", "/tmp/x"]
        );
        assert_eq!(process.terminal(), Some(false));
        assert!(process.env().as_ref().unwrap().iter().any(|e| e == "A=b"));
        assert_eq!(written.root().as_ref().unwrap().readonly(), Some(false));
        assert_eq!(written.hostname().as_deref(), Some("changed"));

        let dir = bundle.path().to_path_buf();
        drop(bundle);
        assert!(!dir.exists());
    }

    #[test]
    fn bundles_are_distinct_directories() {
        let a = Bundle::busybox();
        let b = Bundle::busybox();
        assert_ne!(a.path(), b.path());
    }
}
