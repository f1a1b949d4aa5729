//! What the runtime adds to the spec's `linux.resources` before handing it to `berth-cgroups`.
//!
//! The devices cgroup: like runc and crun, a container may use the devices the runtime creates for it (the
//! defaults and `linux.devices`) and the pty devices, and may mknod anything (using a node still needs an
//! allow rule). The spec's own rules come first, after a leading deny-all, so they can widen but not narrow
//! what the rootfs needs to work.

use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// (type, major, minor, access) of the devices every container may use; `None` is a wildcard.
const ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 12] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),    // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),    // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),    // full
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),    // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),    // urandom
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),    // tty
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),    // console
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),    // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),     // pts/*
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"), // net/tun
];

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// The resources to apply at create: the spec's, with the device rules completed as described above.
pub fn effective_resources(linux: &Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let spec_rules = resources.devices().clone().unwrap_or_default();
    let mut rules = Vec::with_capacity(spec_rules.len() + ALLOWED.len() + 4);
    rules.push(rule(false, Some(LinuxDeviceType::A), None, None, "rwm"));
    rules.extend(spec_rules);
    for (typ, major, minor, access) in ALLOWED {
        rules.push(rule(true, Some(typ), major, minor, access));
    }
    for d in linux.devices().as_deref().unwrap_or_default() {
        if matches!(
            d.typ(),
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U
        ) {
            let typ = if d.typ() == LinuxDeviceType::B {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            rules.push(rule(true, Some(typ), Some(d.major()), Some(d.minor()), "rwm"));
        }
    }
    resources.set_devices(Some(rules));
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_first_then_spec_then_defaults_then_created_devices() {
        let linux: Linux = serde_json::from_str(
            r#"{"resources":{"devices":[{"allow":true,"type":"c","major":4,"minor":1,"access":"r"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}"#,
        )
        .expect("json");
        let rules = effective_resources(&linux).devices().clone().expect("rules");
        assert!(!rules[0].allow() && rules[0].access().as_deref() == Some("rwm"));
        assert_eq!((rules[1].major(), rules[1].minor()), (Some(4), Some(1)));
        assert!(
            rules
                .iter()
                .any(|r| r.allow() && r.major() == Some(5) && r.minor() == Some(2)),
            "ptmx"
        );
        let last = rules.last().expect("last");
        assert!(last.allow() && last.major() == Some(10) && last.minor() == Some(229));
    }
}
