//! Capabilities: docker's default set, `--cap-add`, `--cap-drop` (with `ALL`) and `--privileged`.

use std::collections::HashSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;
use super::host::HostInfo;

/// Capability names by number (`CAP_CHOWN` is 0), from the `caps` crate's table of the kernel's capabilities.
pub fn cap_names() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(ToString::to_string).collect()
}

/// Docker's default capability set, in docker's order.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL: &str = "ALL";

/// Upper-cases `--cap-add`/`--cap-drop` names, adds `CAP_`, and checks each is known and held by the daemon.
/// `ALL` stays `ALL`. `field` (`CapAdd`, `CapDrop`) names the list in errors.
pub fn normalize(names: &[String], field: &'static str, host: &HostInfo) -> Result<Vec<String>, SpecError> {
    names
        .iter()
        .map(|name| {
            let upper = name.to_uppercase();
            if upper == ALL {
                return Ok(upper);
            }
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            if !host.known_caps.contains(&full) {
                Err(SpecError::UnknownCapability { field, name: full })
            } else if !host.caps.contains(&full) {
                Err(SpecError::UnavailableCapability { field, name: full })
            } else {
                Ok(full)
            }
        })
        .collect()
}

/// The container's capabilities: everything the daemon holds when privileged; else the defaults minus `drop`
/// plus `add`, where `--cap-add ALL` starts from everything (minus `drop`) and `--cap-drop ALL` keeps only `add`.
pub fn effective_caps(
    add: &[String],
    drop: &[String],
    privileged: bool,
    host: &HostInfo,
) -> Result<Vec<String>, SpecError> {
    if privileged {
        return Ok(host.caps.iter().map(|c| c.to_string()).collect());
    }
    if add.is_empty() && drop.is_empty() {
        return Ok(DEFAULT_CAPS.iter().map(|c| c.to_string()).collect());
    }
    let drop = normalize(drop, "CapDrop", host)?;
    let add = normalize(add, "CapAdd", host)?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == ALL) {
        host.caps
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .collect()
    } else if drop.iter().any(|c| c == ALL) {
        add
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .chain(add)
            .collect()
    };
    let mut seen = HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// Converts capability names to oci-spec's set (names oci-spec does not know are skipped: they cannot be held).
pub fn to_oci(names: &[String]) -> Capabilities {
    names
        .iter()
        .filter_map(|n| serde_json::from_value::<Capability>(serde_json::Value::String(n.clone())).ok())
        .collect()
}

/// The process capabilities as docker sets them: bounding, permitted and effective; no inheritable or ambient.
pub fn linux_capabilities(names: &[String]) -> LinuxCapabilities {
    let set = to_oci(names);
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_permitted(Some(set.clone()));
    caps.set_effective(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}

/// The names in an oci-spec capability set, as docker spells them.
pub fn names_of(set: &Capabilities) -> Vec<String> {
    let mut names: Vec<String> = set
        .iter()
        .filter_map(|c| match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_without_changes() {
        let host = HostInfo::for_tests();
        let caps = effective_caps(&[], &[], false, &host).unwrap();
        assert_eq!(caps, strings(&DEFAULT_CAPS));
    }

    #[test]
    fn add_and_drop_are_normalized() {
        let host = HostInfo::for_tests();
        let caps = effective_caps(
            &strings(&["net_admin", "CAP_SYS_PTRACE"]),
            &strings(&["mknod", "Cap_Kill"]),
            false,
            &host,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
    }

    #[test]
    fn all_keywords() {
        let host = HostInfo::for_tests();
        let all = effective_caps(&strings(&["ALL"]), &strings(&["sys_admin"]), false, &host).unwrap();
        assert_eq!(all.len(), host.caps.len() - 1);
        assert!(!all.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(
            !all.contains(&"CAP_SYS_RESOURCE".to_string()),
            "not held by the daemon"
        );
        let only = effective_caps(&strings(&["chown"]), &strings(&["all"]), false, &host).unwrap();
        assert_eq!(only, strings(&["CAP_CHOWN"]));
        let none = effective_caps(&[], &strings(&["ALL"]), false, &host).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn privileged_gets_what_the_daemon_holds() {
        let host = HostInfo::for_tests();
        let caps = effective_caps(&[], &strings(&["CHOWN"]), true, &host).unwrap();
        assert_eq!(caps.len(), 40);
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
    }

    #[test]
    fn unknown_and_unavailable_names_fail() {
        let host = HostInfo::for_tests();
        let err = effective_caps(&strings(&["foo"]), &[], false, &host).unwrap_err();
        assert_eq!(err.to_string(), "invalid CapAdd: unknown capability: \"CAP_FOO\"");
        let err = effective_caps(&strings(&["SYS_RESOURCE"]), &[], false, &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CapAdd: capability not supported by your kernel or not available in the current environment: \
             \"CAP_SYS_RESOURCE\""
        );
        let err = effective_caps(&[], &strings(&["bogus"]), false, &host).unwrap_err();
        assert!(err.to_string().starts_with("invalid CapDrop"), "{err}");
    }

    #[test]
    fn oci_conversion_round_trips() {
        let names = strings(&[
            "CAP_CHOWN",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
            "CAP_AUDIT_WRITE",
        ]);
        let caps = linux_capabilities(&names);
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(names_of(caps.bounding().as_ref().unwrap()), expected);
        assert_eq!(names_of(caps.effective().as_ref().unwrap()), expected);
        assert!(caps.ambient().is_none() && caps.inheritable().is_none());
        // Every name of the table is one oci-spec knows.
        let names = cap_names();
        assert_eq!(to_oci(&names).len(), names.len());
    }
}
