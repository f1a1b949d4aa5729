//! Device access rules: the v1 `devices.allow`/`devices.deny` lines, and for cgroup v2 an eBPF program of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE`, generated here and loaded with bpf(2).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// Access bits as the kernel's `bpf_cgroup_dev_ctx` encodes them (`BPF_DEVCG_ACC_*`).
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// Device types (`BPF_DEVCG_DEV_*`).
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

/// One device rule, validated; build them with [`rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// `None` for all types.
    pub block: Option<bool>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACC_*` bits.
    pub access: u32,
}

impl Rule {
    fn is_everything(&self) -> bool {
        self.block.is_none() && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }

    /// The line written to v1 `devices.allow` / `devices.deny`: `c 1:3 rwm`, `a *:* rwm`.
    pub fn v1_line(&self) -> String {
        let t = match self.block {
            None => 'a',
            Some(true) => 'b',
            Some(false) => 'c',
        };
        if self.is_everything() {
            return "a".to_owned();
        }
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut acc = String::with_capacity(3);
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        format!("{t} {}:{} {acc}", num(self.major), num(self.minor))
    }
}

/// Validates the spec's rules. FIFO rules (`p`) are dropped: the kernel does not control fifos through the
/// device cgroup. `u` is a character device. A negative major/minor is a wildcard (runc's -1).
pub fn rules(spec: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(spec.len());
    for d in spec {
        let block = match d.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(true),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(false),
            Some(LinuxDeviceType::P) => continue,
        };
        let num = |n: Option<i64>, what| -> Result<Option<u32>> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n).map(Some).map_err(|_| Error::InvalidValue {
                    what,
                    value: n.to_string(),
                    reason: "device numbers must fit in 32 bits",
                }),
            }
        };
        let access = match d.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(a) => {
                let mut bits = 0;
                for c in a.chars() {
                    bits |= match c {
                        'r' => ACC_READ,
                        'w' => ACC_WRITE,
                        'm' => ACC_MKNOD,
                        _ => {
                            return Err(Error::InvalidValue {
                                what: "device access",
                                value: format!("{a:?}"),
                                reason: "only the letters r, w and m are allowed",
                            });
                        }
                    };
                }
                bits
            }
        };
        out.push(Rule {
            allow: d.allow(),
            block,
            major: num(d.major(), "device major number")?,
            minor: num(d.minor(), "device minor number")?,
            access,
        });
    }
    Ok(out)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used by the device filter.
pub(crate) const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
pub(crate) const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
pub(crate) const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
pub(crate) const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub(crate) const JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
pub(crate) const JMP32_JNE_X: u8 = 0x5e; // BPF_JMP32 | BPF_JNE | BPF_X
pub(crate) const JMP32_JEQ_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
pub(crate) const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Generates the device filter. Registers after the prologue: r2 = device type, r3 = requested access,
/// r4 = major, r5 = minor. Rules are emitted last first, so the first block that matches is the last rule in
/// the spec that matches (the order semantics of v1's allow/deny writes); a rule for everything ends the
/// program; without one the default is deny (v1's `devices.deny a` that starts the list).
///
/// An allow rule matches when every requested access bit is in the rule; a deny rule matches when any
/// requested bit is in the rule. Access granted to one device by several separate allow rules is not merged.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let mut terminated = false;
    for rule in rules.iter().rev() {
        // Each conditional jump skips to the end of this block; offsets are patched once its size is known.
        let mut block: Vec<Insn> = Vec::with_capacity(9);
        if let Some(b) = rule.block {
            block.push(insn(
                JMP32_JNE_K,
                2,
                0,
                0,
                if b { DEV_BLOCK } else { DEV_CHAR } as i32,
            ));
        }
        if rule.access != ACC_ALL {
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU64_AND_K, 1, 0, 0, rule.access as i32));
            if rule.allow {
                // Request ⊆ rule: (access & rule) == access.
                block.push(insn(JMP32_JNE_X, 1, 3, 0, 0));
            } else {
                // Request ∩ rule ≠ ∅.
                block.push(insn(JMP32_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(m) = rule.major {
            block.push(insn(JMP32_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = rule.minor {
            block.push(insn(JMP32_JNE_K, 5, 0, 0, m as i32));
        }
        let unconditional = block.is_empty();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if matches!(ins.code, JMP32_JNE_K | JMP32_JNE_X | JMP32_JEQ_K) {
                // Jump past the rest of the block: offsets count from the next instruction.
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        if unconditional {
            // Anything after an unconditional exit would be unreachable, which the verifier rejects.
            terminated = true;
            break;
        }
    }
    if !terminated {
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p
}

// bpf(2) commands, program and attach types, flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls bpf(2) with `attr`; returns the non-negative result.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for `cmd`, and its size is
    // passed along; the kernel reads (and for queries writes) at most that many bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Loads the program; on failure loads it again with the verifier log on, to report why.
pub(crate) fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_devcg\0");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(source) => {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(Error::BpfLoad {
                insns: insns.len(),
                log: String::from_utf8_lossy(&log[..end]).trim().to_owned(),
                source,
            })
        }
    }
}

/// Ids of the device programs attached to the cgroup `dir`.
pub(crate) fn attached(dir_fd: &OwnedFd, path: &Path) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: dir_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|source| Error::Bpf {
        op: "query of device programs",
        path: path.to_owned(),
        source,
    })?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Loads the filter for `rules`, attaches it to the cgroup with BPF_F_ALLOW_MULTI and then detaches the
/// device programs that were attached before (an update replaces the filter without a window of no filter).
pub(crate) fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    let insns = program(rules);
    let prog = load(&insns)?;
    let dir_fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::Read {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let old = attached(&dir_fd, dir)?;
    let mut attr = AttachAttr {
        target_fd: dir_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|source| Error::Bpf {
        op: "attach of the device filter",
        path: dir.to_owned(),
        source,
    })?;
    for id in old {
        let mut get = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned(fd),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(Error::Bpf {
                    op: "lookup of an old device filter",
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        let mut det = AttachAttr {
            target_fd: dir_fd.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut det) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(source) => {
                return Err(Error::Bpf {
                    op: "detach of an old device filter",
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// A tiny interpreter for the instructions `program` emits, to check its semantics.
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let dst = (i.regs & 0x0f) as usize;
            let src = (i.regs >> 4) as usize;
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JMP32_JNE_K => {
                    if r[dst] as u32 != i.imm as u32 {
                        pc += i.off as usize;
                    }
                }
                JMP32_JNE_X => {
                    if r[dst] as u32 != r[src] as u32 {
                        pc += i.off as usize;
                    }
                }
                JMP32_JEQ_K => {
                    if r[dst] as u32 == i.imm as u32 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(acc);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn empty_rules_deny_everything() {
        let p = program(&[]);
        assert_eq!(p.len(), 8);
        assert_eq!(p[6], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(p[7].code, EXIT);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn typical_container_rules() {
        use LinuxDeviceType::*;
        let spec = [
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "rwm"), // /dev/null
            rule(true, C, Some(1), Some(5), "rw"),  // /dev/zero, no mknod
            rule(true, C, Some(136), None, "rwm"),  // pts
            rule(false, C, Some(1), Some(3), "w"),  // then no writes to /dev/null
        ];
        let rules = rules(&spec).unwrap();
        let p = program(&rules);
        // The deny-everything rule is unconditional, so it is the last block and nothing follows it.
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 7), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 136, 7), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 8), 0);
    }

    #[test]
    fn allow_all_then_deny_one() {
        use LinuxDeviceType::*;
        let rules = rules(&[
            rule(true, A, None, None, "rwm"),
            rule(false, B, Some(8), None, "rwm"),
        ])
        .unwrap();
        let p = program(&rules);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 1), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 9, 1), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 8, 1), 1);
        // Allow-everything is unconditional: the program ends with it, no default block after it.
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 1));
    }

    #[test]
    fn large_numbers_compare_as_32_bit() {
        use LinuxDeviceType::*;
        let rules = rules(&[rule(true, C, Some(0xffff_fff0), Some(4_000_000_000), "r")]).unwrap();
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 0xffff_fff0, 4_000_000_000), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 0xffff_fff0, 4_000_000_001), 0);
    }

    #[test]
    fn v1_lines() {
        use LinuxDeviceType::*;
        let r = rules(&[
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "mrw"),
            rule(true, B, None, Some(2), "r"),
            rule(true, U, Some(4), None, ""),
            rule(true, P, Some(4), None, ""),
        ])
        .unwrap();
        let lines: Vec<_> = r.iter().map(Rule::v1_line).collect();
        assert_eq!(lines, ["a", "c 1:3 rwm", "b *:2 r", "c 4:* rwm"]);
    }

    #[test]
    fn bad_access_is_rejected() {
        let e = rules(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")]).unwrap_err();
        assert!(e.to_string().contains("\"rx\""), "{e}");
        let e = rules(&[rule(true, LinuxDeviceType::C, Some(1 << 40), Some(3), "r")]).unwrap_err();
        assert!(e.to_string().contains("1099511627776"), "{e}");
    }
}
