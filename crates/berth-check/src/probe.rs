//! Reading what the process sees. Every probe returns a value or a sentence; none aborts.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use crate::names::{RLIMITS, capability_names, errno_name};
use crate::report::{
    CapSet, Capabilities, CheckReport, FdsReport, MountEntry, OpenFd, Probe, Rlimit, StdioTty, WriteOutcome,
};

/// The namespace links of `/proc/self/ns` that the report reads.
pub const NAMESPACES: [&str; 10] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

/// Turns an I/O error on `path` into the sentence a probe holds.
fn describe(what: &str, path: &str, err: &io::Error) -> String {
    format!("could not {what} {path}: {}", explain(err))
}

/// `No such file or directory (ENOENT)` for an OS error, the error's own text otherwise.
fn explain(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{text} ({})", errno_name(errno))
        }
        None => err.to_string(),
    }
}

fn read(path: &str) -> Probe<String> {
    fs::read_to_string(path).map_err(|e| describe("read", path, &e))
}

fn read_lines(path: &str) -> Probe<Vec<String>> {
    Ok(read(path)?.lines().map(str::to_string).collect())
}

/// Reads the whole report.
pub fn collect_report() -> CheckReport {
    let status = read("/proc/self/status").map(|text| parse_status(&text));
    let field = |name: &str| -> Probe<String> {
        let fields = status.as_ref().map_err(Clone::clone)?;
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| format!("/proc/self/status has no {name} field"))
    };
    let uname = uname();
    CheckReport {
        // SAFETY: getpid, getppid, getpgrp, getuid, geteuid, getgid and getegid take no arguments and cannot fail.
        pid: unsafe { libc::getpid() },
        // SAFETY: as above.
        ppid: unsafe { libc::getppid() },
        // SAFETY: as above.
        pgid: unsafe { libc::getpgrp() },
        // SAFETY: getsid(0) asks about the calling process; it takes no pointers.
        sid: unsafe { libc::getsid(0) },
        // SAFETY: as above.
        uid: unsafe { libc::getuid() },
        // SAFETY: as above.
        euid: unsafe { libc::geteuid() },
        // SAFETY: as above.
        gid: unsafe { libc::getgid() },
        // SAFETY: as above.
        egid: unsafe { libc::getegid() },
        groups: groups(),
        umask: field("Umask").and_then(|v| parse_octal("Umask", &v)),
        cwd: std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| describe("read", "the working directory", &e)),
        hostname: uname.as_ref().map(|u| u.0.clone()).map_err(Clone::clone),
        domainname: uname.map(|u| u.1),
        uid_map: read_lines("/proc/self/uid_map"),
        gid_map: read_lines("/proc/self/gid_map"),
        capabilities: capabilities(&field),
        no_new_privs: field("NoNewPrivs").and_then(|v| match v.as_str() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(format!("NoNewPrivs is {other:?}, not 0 or 1")),
        }),
        seccomp: field("Seccomp").and_then(|v| parse_decimal("Seccomp", &v)),
        seccomp_filters: field("Seccomp_filters").and_then(|v| parse_decimal("Seccomp_filters", &v)),
        mounts: read("/proc/self/mountinfo").and_then(|text| parse_mountinfo(&text)),
        rlimits: rlimits(),
        cgroup: read_lines("/proc/self/cgroup"),
        fds: open_fds(),
        env: std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect(),
        argv: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        interfaces: interfaces(),
        namespaces: namespaces(),
        oom_score_adj: read("/proc/self/oom_score_adj").and_then(|v| {
            v.trim()
                .parse()
                .map_err(|e| format!("oom_score_adj {:?} is not a number: {e}", v.trim()))
        }),
        exe_write: open_for_writing(Path::new("/proc/self/exe")),
        tty: StdioTty {
            stdin: isatty(0),
            stdout: isatty(1),
            stderr: isatty(2),
        },
    }
}

/// Reads only the open descriptors.
pub fn collect_fds() -> FdsReport {
    FdsReport { fds: open_fds() }
}

/// Splits `/proc/self/status` into `name → value` (value trimmed).
pub fn parse_status(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect()
}

fn parse_octal(name: &str, value: &str) -> Probe<u32> {
    u32::from_str_radix(value, 8).map_err(|e| format!("{name} {value:?} is not an octal number: {e}"))
}

fn parse_decimal(name: &str, value: &str) -> Probe<u32> {
    value
        .parse()
        .map_err(|e| format!("{name} {value:?} is not a number: {e}"))
}

/// Decodes a capability mask as `/proc/self/status` prints it.
pub fn cap_set(hex: &str) -> Probe<CapSet> {
    let mask =
        u64::from_str_radix(hex, 16).map_err(|e| format!("capability mask {hex:?} is not hex: {e}"))?;
    Ok(CapSet {
        hex: hex.to_string(),
        names: capability_names(mask),
    })
}

fn capabilities(field: &dyn Fn(&str) -> Probe<String>) -> Probe<Capabilities> {
    let set = |name: &str| field(name).and_then(|hex| cap_set(&hex));
    Ok(Capabilities {
        inheritable: set("CapInh")?,
        permitted: set("CapPrm")?,
        effective: set("CapEff")?,
        bounding: set("CapBnd")?,
        ambient: set("CapAmb")?,
    })
}

fn groups() -> Probe<Vec<u32>> {
    // SAFETY: with a size of 0 getgroups only returns the count and does not touch the (null) list.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let len = usize::try_from(count).map_err(|_| last_error("getgroups"))?;
    let mut list: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `list` has room for `count` gids, the size passed.
    let got = unsafe { libc::getgroups(count, list.as_mut_ptr()) };
    let got = usize::try_from(got).map_err(|_| last_error("getgroups"))?;
    list.truncate(got);
    Ok(list)
}

fn last_error(call: &str) -> String {
    format!("{call} failed: {}", explain(&io::Error::last_os_error()))
}

/// `(nodename, domainname)`.
fn uname() -> Probe<(String, String)> {
    // SAFETY: utsname is plain arrays of c_char; all zeroes is a valid value.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, writable utsname.
    if unsafe { libc::uname(&mut buf) } != 0 {
        return Err(last_error("uname"));
    }
    let field = |chars: &[libc::c_char]| {
        // The kernel NUL-terminates every field; reinterpret c_char as u8 to find the terminator.
        let bytes: Vec<u8> = chars.iter().map(|&c| c.to_ne_bytes()[0]).collect();
        match CStr::from_bytes_until_nul(&bytes) {
            Ok(s) => Ok(s.to_string_lossy().into_owned()),
            Err(_) => Err("uname returned a field without a terminating NUL".to_string()),
        }
    };
    Ok((field(&buf.nodename)?, field(&buf.domainname)?))
}

fn rlimits() -> BTreeMap<String, Probe<Rlimit>> {
    RLIMITS
        .iter()
        .map(|&(name, resource)| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `limit` is a valid, writable rlimit; an unknown resource makes the call fail with EINVAL.
            let rc = unsafe { libc::getrlimit(resource as _, &mut limit) };
            let value = if rc == 0 {
                Ok(Rlimit {
                    soft: limit.rlim_cur,
                    hard: limit.rlim_max,
                })
            } else {
                Err(last_error(&format!("getrlimit({name})")))
            };
            (name.to_string(), value)
        })
        .collect()
}

/// Lists `/proc/self/fd`. The directory's own descriptor is closed before the links are read, so it drops out
/// (its link no longer exists).
fn open_fds() -> Probe<Vec<OpenFd>> {
    let dir = "/proc/self/fd";
    let mut numbers: Vec<i32> = fs::read_dir(dir)
        .map_err(|e| describe("list", dir, &e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut fds = Vec::with_capacity(numbers.len());
    for fd in numbers {
        let link = format!("{dir}/{fd}");
        match fs::read_link(&link) {
            Ok(target) => fds.push(OpenFd {
                fd,
                target: Ok(target.to_string_lossy().into_owned()),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => fds.push(OpenFd {
                fd,
                target: Err(describe("read the link", &link, &e)),
            }),
        }
    }
    Ok(fds)
}

fn interfaces() -> Probe<Vec<String>> {
    match read("/proc/net/dev") {
        Ok(text) => Ok(parse_net_dev(&text)),
        Err(proc_error) => {
            let dir = "/sys/class/net";
            let entries =
                fs::read_dir(dir).map_err(|e| format!("{proc_error}; and {}", describe("list", dir, &e)))?;
            let mut names: Vec<String> = entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            Ok(names)
        }
    }
}

/// Interface names from the text of `/proc/net/dev` (two header lines, then `name: counters`).
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

fn namespaces() -> BTreeMap<String, Probe<u64>> {
    NAMESPACES
        .iter()
        .map(|&name| {
            let link = format!("/proc/self/ns/{name}");
            let value = fs::read_link(&link)
                .map_err(|e| describe("read the link", &link, &e))
                .and_then(|target| {
                    let target = target.to_string_lossy().into_owned();
                    parse_ns_link(&target)
                        .ok_or_else(|| format!("{link} points to {target:?}, not type:[inode]"))
                });
            (name.to_string(), value)
        })
        .collect()
}

/// The inode of a namespace link target such as `net:[4026531840]`.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    let (_, rest) = target.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor; a closed one yields 0.
    unsafe { libc::isatty(fd) == 1 }
}

fn outcome(result: io::Result<()>, what: &str, path: &Path) -> WriteOutcome {
    match result {
        Ok(()) => WriteOutcome {
            ok: true,
            errno: None,
            error: None,
        },
        Err(e) => WriteOutcome {
            ok: false,
            errno: e.raw_os_error().map(errno_name),
            error: Some(describe(what, &path.display().to_string(), &e)),
        },
    }
}

/// Opens `path` write-only and closes it again without writing anything.
pub fn open_for_writing(path: &Path) -> WriteOutcome {
    outcome(
        fs::OpenOptions::new().write(true).open(path).map(drop),
        "open for writing",
        path,
    )
}

/// Creates (or truncates) `path` and writes a line to it.
pub fn write_file(path: &Path) -> WriteOutcome {
    let result = fs::File::create(path).and_then(|mut f| f.write_all(b"written by berth-check\n"));
    outcome(result, "write", path)
}

/// Unescapes the octal escapes (`\040` for a space, ...) the kernel uses in mountinfo fields.
pub fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let digits = &field[i + 1..i + 4];
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Probe<Vec<MountEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_mountinfo_line)
        .collect()
}

fn parse_mountinfo_line(line: &str) -> Probe<MountEntry> {
    let bad = |why: &str| format!("mountinfo line {line:?} {why}");
    let (head, tail) = line
        .split_once(" - ")
        .ok_or_else(|| bad("has no ' - ' separator"))?;
    let head: Vec<&str> = head.split(' ').collect();
    let tail: Vec<&str> = tail.split(' ').collect();
    if head.len() < 6 || tail.len() < 3 {
        return Err(bad("has too few fields"));
    }
    let split_options = |s: &str| {
        s.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(MountEntry {
        mount_id: head[0].parse().map_err(|_| bad("has a bad mount id"))?,
        parent_id: head[1].parse().map_err(|_| bad("has a bad parent id"))?,
        major_minor: head[2].to_string(),
        root: unescape_octal(head[3]),
        mount_point: unescape_octal(head[4]),
        mount_options: split_options(head[5]),
        propagation: head[6..].iter().map(|s| s.to_string()).collect(),
        fs_type: unescape_octal(tail[0]),
        source: unescape_octal(tail[1]),
        super_options: split_options(tail[2]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_with_propagation_and_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    35 22 0:5 /dir /mnt/with\\040space ro,nosuid master:3 propagate_from:2 - tmpfs tmpfs rw,size=65536k,mode=755\n\
                    36 22 0:6 / /private rw - proc proc rw\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, "/");
        assert_eq!(mounts[0].propagation, ["shared:1"]);
        assert_eq!(mounts[0].source, "/dev/vda");
        let m = &mounts[1];
        assert_eq!((m.mount_id, m.parent_id), (35, 22));
        assert_eq!(m.root, "/dir");
        assert_eq!(m.mount_point, "/mnt/with space");
        assert_eq!(m.propagation, ["master:3", "propagate_from:2"]);
        assert!(m.is_read_only());
        assert!(m.has_option("nosuid") && m.has_option("mode=755"));
        assert!(mounts[2].propagation.is_empty());
        assert_eq!(mounts[2].fs_type, "proc");
    }

    #[test]
    fn malformed_mountinfo_is_an_error_naming_the_line() {
        let err = parse_mountinfo("garbage line\n").unwrap_err();
        assert!(err.contains("garbage line"), "{err}");
    }

    #[test]
    fn status_capabilities_and_ns_links() {
        let status = parse_status("Name:\tx\nCapEff:\t0000000020000420\nNoNewPrivs:\t1\n");
        assert_eq!(status["NoNewPrivs"], "1");
        let set = cap_set(&status["CapEff"]).unwrap();
        assert_eq!(set.names, ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]);
        assert!(set.contains("CAP_KILL") && !set.contains("CAP_SYS_ADMIN"));
        assert!(cap_set("zz").is_err());
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("net:4026531840"), None);
    }

    #[test]
    fn net_dev_names() {
        let text = "Inter-|   Receive\n face |bytes\n    lo: 0 0 0\n  eth0: 1 2 3\n";
        assert_eq!(parse_net_dev(text), ["lo", "eth0"]);
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape_octal(r"a\134b\040c"), r"a\b c");
        assert_eq!(unescape_octal(r"a\x"), r"a\x");
        assert_eq!(unescape_octal(r"end\04"), r"end\04");
    }

    #[test]
    fn write_outcome_names_errno() {
        let dir = std::env::temp_dir().join(format!("berth-check-missing-{}", std::process::id()));
        let out = write_file(&dir.join("sub").join("file"));
        assert!(!out.ok);
        assert_eq!(out.errno.as_deref(), Some("ENOENT"));
    }
}
