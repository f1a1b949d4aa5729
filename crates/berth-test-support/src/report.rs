//! The in-container report, as `berth-check` prints it.

pub use berth_check::report::*;
use thiserror::Error;

/// Why a report could not be parsed.
#[derive(Debug, Error)]
#[error("berth-check printed something that is not a report ({source}): {text:?}")]
pub struct ReportError {
    /// What was printed.
    pub text: String,
    /// The parse error.
    #[source]
    pub source: serde_json::Error,
}

/// Parses what `berth-check report` printed.
pub fn parse_report(stdout: &[u8]) -> Result<CheckReport, ReportError> {
    serde_json::from_slice(stdout).map_err(|source| ReportError {
        text: String::from_utf8_lossy(stdout).into_owned(),
        source,
    })
}

/// Parses what `berth-check write <path>` printed.
pub fn parse_write_outcome(stdout: &[u8]) -> Result<WriteOutcome, ReportError> {
    serde_json::from_slice(stdout).map_err(|source| ReportError {
        text: String::from_utf8_lossy(stdout).into_owned(),
        source,
    })
}

/// Parses what `berth-check fds` printed.
pub fn parse_fds(stdout: &[u8]) -> Result<FdsReport, ReportError> {
    serde_json::from_slice(stdout).map_err(|source| ReportError {
        text: String::from_utf8_lossy(stdout).into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample() -> CheckReport {
        CheckReport {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            groups: Ok(vec![10]),
            umask: Ok(0o22),
            cwd: Ok("/".into()),
            hostname: Ok("berth".into()),
            domainname: Err("could not read it".into()),
            uid_map: Ok(vec!["0 0 4294967295".into()]),
            gid_map: Ok(vec![]),
            capabilities: Ok(Capabilities {
                inheritable: CapSet {
                    hex: "0000000000000000".into(),
                    names: vec![],
                },
                permitted: CapSet {
                    hex: "0000000000000020".into(),
                    names: vec!["CAP_KILL".into()],
                },
                effective: CapSet {
                    hex: "0000000000000020".into(),
                    names: vec!["CAP_KILL".into()],
                },
                bounding: CapSet {
                    hex: "0000000000000020".into(),
                    names: vec!["CAP_KILL".into()],
                },
                ambient: CapSet {
                    hex: "0000000000000000".into(),
                    names: vec![],
                },
            }),
            no_new_privs: Ok(true),
            seccomp: Ok(2),
            seccomp_filters: Ok(1),
            mounts: Ok(vec![MountEntry {
                mount_id: 1,
                parent_id: 0,
                major_minor: "0:1".into(),
                root: "/".into(),
                mount_point: "/proc".into(),
                mount_options: vec!["rw".into()],
                propagation: vec!["master:1".into()],
                fs_type: "proc".into(),
                source: "proc".into(),
                super_options: vec!["rw".into()],
            }]),
            rlimits: BTreeMap::from([(
                "RLIMIT_NOFILE".into(),
                Ok(Rlimit {
                    soft: 1024,
                    hard: u64::MAX,
                }),
            )]),
            cgroup: Ok(vec!["0::/".into()]),
            fds: Ok(vec![
                OpenFd {
                    fd: 0,
                    target: Ok("/dev/null".into()),
                },
                OpenFd {
                    fd: 1,
                    target: Err("x".into()),
                },
            ]),
            env: vec!["PATH=/bin".into(), "EMPTY=".into()],
            argv: vec!["/bin/berth-check".into(), "report".into()],
            interfaces: Ok(vec!["lo".into()]),
            namespaces: BTreeMap::from([
                ("pid".into(), Ok(4026531836)),
                ("time".into(), Err("none".into())),
            ]),
            oom_score_adj: Ok(-1000),
            exe_write: WriteOutcome {
                ok: false,
                errno: Some("ETXTBSY".into()),
                error: Some("busy".into()),
            },
            tty: StdioTty {
                stdin: false,
                stdout: false,
                stderr: true,
            },
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let report = sample();
        let json = serde_json::to_vec(&report).unwrap();
        assert_eq!(parse_report(&json).unwrap(), report);
        // Probes are tagged: a reader can tell an error from a value without knowing the field's type.
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["domainname"]["Err"], "could not read it");
        assert_eq!(value["rlimits"]["RLIMIT_NOFILE"]["Ok"]["hard"], u64::MAX);
    }

    #[test]
    fn helpers_find_mounts_env_and_fds() {
        let report = sample();
        assert_eq!(report.mount_at("/proc").unwrap().propagation, ["master:1"]);
        assert!(report.mount_at("/sys").is_none());
        assert_eq!(report.env_var("PATH"), Some("/bin"));
        assert_eq!(report.env_var("EMPTY"), Some(""));
        assert_eq!(report.env_var("MISSING"), None);
        assert_eq!(report.fd_numbers().unwrap(), [0, 1]);
        assert!(report.capabilities.unwrap().bounding.contains("CAP_KILL"));
    }

    #[test]
    fn garbage_is_an_error_that_quotes_it() {
        let err = parse_report(b"sh: berth-check: not found").unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert!(
            parse_write_outcome(br#"{"ok":true,"errno":null,"error":null}"#)
                .unwrap()
                .ok
        );
        assert!(parse_fds(br#"{"fds":{"Err":"no /proc"}}"#).unwrap().fds.is_err());
    }
}
