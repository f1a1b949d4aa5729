//! Layer unpacking: hostile tars are refused or neutralised without touching anything outside the layer, and
//! the metadata of ordinary entries survives.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::unpack::{Limits, UnpackError, unpack_layer, unpack_tar};

/// A scratch area: `<tmp>/sentinel` (a host file the tars try to reach) and `<tmp>/layer` (the target).
struct Scratch {
    dir: tempfile::TempDir,
}

const SENTINEL: &[u8] = b"host file, must not change\n";

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("sentinel"), SENTINEL).expect("write sentinel");
        std::fs::create_dir(dir.path().join("layer")).expect("mkdir layer");
        Scratch { dir }
    }
    fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }
    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }
    /// The sentinel's absolute path without the leading slash.
    fn sentinel_rel(&self) -> String {
        self.sentinel()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned()
    }
    /// Nothing outside the layer changed: the sentinel is intact and the scratch dir holds only the two entries.
    fn assert_host_untouched(&self) {
        assert_eq!(std::fs::read(self.sentinel()).expect("read sentinel"), SENTINEL);
        let meta = std::fs::symlink_metadata(self.sentinel()).expect("stat sentinel");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.nlink(), 1, "the sentinel got a hard link");
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["layer".to_owned(), "sentinel".to_owned()]);
    }
}

/// Writes tar headers by hand so that hostile names (which `tar::Builder` refuses) can be expressed.
struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    fn new() -> RawTar {
        RawTar { out: Vec::new() }
    }

    fn entry(&mut self, name: &str, kind: u8, link: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let b = h.as_mut_bytes();
            assert!(
                name.len() <= 100 && link.len() <= 100,
                "test names must fit the ustar fields"
            );
            b[..name.len()].copy_from_slice(name.as_bytes());
            b[157..157 + link.len()].copy_from_slice(link.as_bytes());
            b[156] = kind;
        }
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, b'0', "", data, 0o644)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, b'5', "", b"", 0o755)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, b'2', target, b"", 0o777)
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, b'1', target, b"", 0o644)
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.out);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

fn unpack(s: &Scratch, tar: &[u8]) -> Result<berth_image::unpack::UnpackStats, UnpackError> {
    unpack_tar(tar, &s.layer(), &Limits::default(), None)
}

#[test]
fn dotdot_path_is_refused() {
    let s = Scratch::new();
    let tar = RawTar::new().file("../sentinel", b"pwned").finish();
    let err = unpack(&s, &tar).expect_err("a ../ path must fail");
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");
    assert!(err.to_string().contains("../sentinel"), "{err}");
    s.assert_host_untouched();

    let tar = RawTar::new().file("a/../../../sentinel", b"pwned").finish();
    let err = unpack(&s, &tar).expect_err("a ../ path must fail");
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");
    s.assert_host_untouched();
}

#[test]
fn absolute_path_stays_inside() {
    let s = Scratch::new();
    let name = format!("/{}", s.sentinel_rel());
    let tar = RawTar::new().file(&name, b"pwned").finish();
    unpack(&s, &tar).expect("an absolute path is taken relative to the layer");
    s.assert_host_untouched();
    assert_eq!(
        std::fs::read(s.layer().join(s.sentinel_rel())).expect("inside"),
        b"pwned"
    );
}

#[test]
fn absolute_symlink_then_write_through_it_stays_inside() {
    let s = Scratch::new();
    let through = format!("evil/{}", s.sentinel_rel());
    let tar = RawTar::new()
        .symlink("evil", "/")
        .file(&through, b"pwned")
        .finish();
    unpack(&s, &tar).expect("the write resolves inside the layer");
    s.assert_host_untouched();
    assert_eq!(
        std::fs::read(s.layer().join(s.sentinel_rel())).expect("inside"),
        b"pwned"
    );
    assert_eq!(
        std::fs::read_link(s.layer().join("evil")).expect("link kept"),
        Path::new("/")
    );
}

#[test]
fn relative_symlink_out_then_write_through_it_stays_inside() {
    let s = Scratch::new();
    let through = format!("up/{}", s.sentinel_rel());
    let tar = RawTar::new()
        .dir("a")
        .symlink("a/up", "../../../../../../../../..")
        .file(&format!("a/{through}"), b"pwned")
        .finish();
    unpack(&s, &tar).expect("the write resolves inside the layer");
    s.assert_host_untouched();
    assert_eq!(
        std::fs::read(s.layer().join(s.sentinel_rel())).expect("inside"),
        b"pwned"
    );
}

#[test]
fn symlink_to_host_file_then_regular_file_replaces_the_link() {
    let s = Scratch::new();
    let target = s.sentinel().to_string_lossy().into_owned();
    let tar = RawTar::new()
        .symlink("link", &target)
        .file("link", b"pwned")
        .finish();
    unpack(&s, &tar).expect("the file replaces the symlink");
    s.assert_host_untouched();
    let meta = std::fs::symlink_metadata(s.layer().join("link")).expect("stat");
    assert!(meta.file_type().is_file());
}

#[test]
fn directory_replaced_by_symlink_then_write_through_it_stays_inside() {
    let s = Scratch::new();
    let host_dir = s.dir.path().to_string_lossy().into_owned();
    let tar = RawTar::new()
        .dir("d")
        .file("d/x", b"ok")
        .symlink("d", &host_dir)
        .file("d/sentinel", b"pwned")
        .finish();
    // The symlink's target does not exist inside the layer: the write fails instead of leaving it.
    let err = unpack(&s, &tar).expect_err("the parent resolves inside the layer, where it does not exist");
    assert!(
        matches!(&err, UnpackError::Fs { path, .. } if path == "d/sentinel"),
        "{err}"
    );
    s.assert_host_untouched();
    // With the target present inside the layer, the write lands there.
    let s = Scratch::new();
    let host_dir = s.dir.path().to_string_lossy().into_owned();
    let mut raw = RawTar::new();
    raw.dir("d").symlink("d", &host_dir);
    let mut prefix = String::new();
    for comp in s.dir.path().strip_prefix("/").expect("absolute").components() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(&comp.as_os_str().to_string_lossy());
        raw.dir(&prefix);
    }
    let tar = raw.file("d/sentinel", b"pwned").finish();
    unpack(&s, &tar).expect("the write resolves inside the layer");
    s.assert_host_untouched();
    let inside = s
        .layer()
        .join(s.dir.path().strip_prefix("/").expect("absolute"))
        .join("sentinel");
    assert_eq!(std::fs::read(inside).expect("inside"), b"pwned");
}

#[test]
fn hard_links_to_host_files_are_refused() {
    for absolute in [false, true] {
        let s = Scratch::new();
        let target = if absolute {
            s.sentinel().to_string_lossy().into_owned()
        } else {
            "../sentinel".to_owned()
        };
        let tar = RawTar::new().hardlink("hl", &target).finish();
        let err = unpack(&s, &tar).expect_err("a hard link to a host file must fail");
        assert!(matches!(err, UnpackError::HardLinkTarget { .. }), "{err}");
        s.assert_host_untouched();
    }
    // Through a symlink that points at the host's root.
    let s = Scratch::new();
    let through = format!("evil/{}", s.sentinel_rel());
    let tar = RawTar::new()
        .symlink("evil", "/")
        .hardlink("hl", &through)
        .finish();
    let err = unpack(&s, &tar).expect_err("a hard link through a symlink to a host file must fail");
    assert!(matches!(err, UnpackError::HardLinkTarget { .. }), "{err}");
    s.assert_host_untouched();
    // Hard link to a symlink that points out: links the symlink itself, the sentinel keeps one link.
    let s = Scratch::new();
    let target = s.sentinel().to_string_lossy().into_owned();
    let tar = RawTar::new().symlink("sl", &target).hardlink("hl", "sl").finish();
    unpack(&s, &tar).expect("a hard link to a symlink inside the layer is fine");
    s.assert_host_untouched();
    assert!(
        std::fs::symlink_metadata(s.layer().join("hl"))
            .expect("stat")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn decompression_bomb_is_stopped() {
    let s = Scratch::new();
    // 64 MiB of zeros compress to ~64 KiB.
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    builder
        .append_data(&mut h, "zeros", std::io::Read::take(std::io::repeat(0), 64 << 20))
        .expect("append");
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    assert!(gz.len() < 1 << 20);
    let limits = Limits {
        max_bytes: 8 << 20,
        ..Limits::default()
    };
    let err = unpack_layer(&gz[..], &s.layer(), &limits, None, None).expect_err("the bomb must be stopped");
    assert!(
        matches!(err, UnpackError::TooLarge { limit } if limit == 8 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("8388608"), "{err}");
    s.assert_host_untouched();

    // Too many entries.
    let mut raw = RawTar::new();
    for i in 0..50 {
        raw.file(&format!("f{i}"), b"");
    }
    let tar = raw.finish();
    let limits = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    let err = unpack_tar(&tar[..], &s.layer(), &limits, None).expect_err("too many entries");
    assert!(matches!(err, UnpackError::TooManyEntries { limit: 20 }), "{err}");
}

#[test]
fn oversized_extension_header_is_refused() {
    let s = Scratch::new();
    let mut raw = RawTar::new();
    let big = vec![b'a'; 2 << 20];
    raw.entry("././@LongLink", b'L', "", &big, 0o644).file("x", b"");
    let err = unpack(&s, &raw.finish()).expect_err("a 2 MiB long name must fail");
    assert!(matches!(err, UnpackError::HeaderTooLarge { .. }), "{err}");
}

#[test]
fn truncated_and_corrupt_streams_fail() {
    let s = Scratch::new();
    let tar = RawTar::new().file("a", &[7u8; 5000]).finish();
    let err = unpack(&s, &tar[..2000]).expect_err("truncated");
    assert!(matches!(err, UnpackError::Malformed { .. }), "{err}");
    let mut bad = tar.clone();
    bad[10] ^= 0x55;
    let err = unpack(&s, &bad).expect_err("bad checksum");
    assert!(err.to_string().contains("checksum"), "{err}");
    // A truncated gzip stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let s2 = Scratch::new();
    let err = unpack_layer(&gz[..gz.len() - 10], &s2.layer(), &Limits::default(), None, None)
        .expect_err("truncated gzip");
    assert!(
        matches!(
            err,
            UnpackError::Decompress { .. } | UnpackError::Malformed { .. }
        ),
        "{err}"
    );
}

/// Builds a pax-extended entry with xattrs using the tar crate.
fn pax_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    header: &mut tar::Header,
    path: &str,
    xattrs: &[(&str, &[u8])],
    data: &[u8],
) {
    if !xattrs.is_empty() {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("pax");
    }
    builder.append_data(header, path, data).expect("append");
}

#[test]
fn metadata_round_trip() {
    let s = Scratch::new();
    let mut b = tar::Builder::new(Vec::new());
    let mtime = 1_234_567_890u64;
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(mtime);
    h.set_size(0);
    b.append_data(&mut h, "dir/", std::io::empty()).expect("dir");

    let mut h = tar::Header::new_ustar();
    h.set_mode(0o4755);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(mtime + 1);
    h.set_size(5);
    // security.capability: v2 structure with cap_net_bind_service permitted+effective.
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cap = {
        let mut c = cap;
        c[0] = 1; // VFS_CAP_FLAGS_EFFECTIVE | revision 2 (0x02000001 little endian)
        c[3] = 2;
        c
    };
    pax_entry(
        &mut b,
        &mut h,
        "dir/suid",
        &[("user.note", b"hello"), ("security.capability", &cap)],
        b"hello",
    );

    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_size(0);
    b.append_link(&mut h, "dir/hard", "dir/suid").expect("hardlink");

    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_uid(42);
    h.set_gid(43);
    h.set_mtime(mtime + 2);
    h.set_size(0);
    b.append_link(&mut h, "dir/sym", "/nowhere/target")
        .expect("symlink");

    for (name, kind, major, minor, mode) in [
        ("dir/null", tar::EntryType::Char, 1u32, 3u32, 0o666),
        ("dir/loop9", tar::EntryType::Block, 7, 9, 0o660),
        ("dir/fifo", tar::EntryType::Fifo, 0, 0, 0o620),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).expect("dev");
    }
    for name in ["dir/.wh.gone", "opq/.wh..wh..opq"] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(mtime);
        b.append_data(&mut h, name, std::io::empty()).expect("whiteout");
    }
    let tar = b.into_inner().expect("tar");
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    z.write_all(&tar).expect("zstd");
    let z = z.finish().expect("zstd");

    let expected_diff = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&tar);
        format!(
            "sha256:{}",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let out = unpack_layer(
        &z[..],
        &s.layer(),
        &Limits::default(),
        Some(&expected_diff),
        Some(&s.dir.path().join("index")),
    )
    .expect("unpack");
    assert_eq!(out.compression, berth_image::unpack::Compression::Zstd);
    assert_eq!(out.diff_id, expected_diff);
    let l = s.layer();

    let d = std::fs::symlink_metadata(l.join("dir")).expect("dir");
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
        (0o750, 1000, 1001, mtime as i64)
    );

    let f = std::fs::symlink_metadata(l.join("dir/suid")).expect("file");
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.mtime()),
        (0o4755, 1234, 5678, mtime as i64 + 1)
    );
    assert_eq!(f.nlink(), 2, "the hard link shares the inode");
    assert_eq!(std::fs::read(l.join("dir/hard")).expect("hard"), b"hello");
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(l.join("dir/suid"), "user.note", &mut buf[..]).expect("user xattr");
    assert_eq!(&buf[..n], b"hello");
    let n =
        rustix::fs::lgetxattr(l.join("dir/suid"), "security.capability", &mut buf[..]).expect("file caps");
    assert_eq!(&buf[..n], &cap);

    let sl = std::fs::symlink_metadata(l.join("dir/sym")).expect("symlink");
    assert!(sl.file_type().is_symlink());
    assert_eq!((sl.uid(), sl.gid(), sl.mtime()), (42, 43, mtime as i64 + 2));
    assert_eq!(
        std::fs::read_link(l.join("dir/sym")).expect("readlink"),
        Path::new("/nowhere/target")
    );

    let c = std::fs::symlink_metadata(l.join("dir/null")).expect("char");
    assert!(c.file_type().is_char_device());
    assert_eq!((c.rdev(), c.mode() & 0o7777), (rustix::fs::makedev(1, 3), 0o666));
    let bl = std::fs::symlink_metadata(l.join("dir/loop9")).expect("block");
    assert!(bl.file_type().is_block_device());
    assert_eq!(
        (bl.rdev(), bl.mode() & 0o7777),
        (rustix::fs::makedev(7, 9), 0o660)
    );
    let fi = std::fs::symlink_metadata(l.join("dir/fifo")).expect("fifo");
    assert!(fi.file_type().is_fifo());
    assert_eq!(fi.permissions().mode() & 0o7777, 0o620);

    let w = std::fs::symlink_metadata(l.join("dir/gone")).expect("whiteout");
    assert!(w.file_type().is_char_device());
    assert_eq!(w.rdev(), 0);
    assert!(!l.join("dir/.wh.gone").exists());
    let n = rustix::fs::lgetxattr(l.join("opq"), "trusted.overlay.opaque", &mut buf[..]).expect("opaque");
    assert_eq!(&buf[..n], b"y");
    assert!(std::fs::symlink_metadata(l.join("opq/.wh..wh..opq")).is_err());
    // The tar index rebuilds the identical stream.
    let mut rebuilt = Vec::new();
    berth_image::unpack::assemble_tar(&s.dir.path().join("index"), &l, &mut rebuilt).expect("assemble");
    assert!(rebuilt == tar, "the rebuilt tar differs from the original");
    std::fs::remove_file(s.dir.path().join("index")).expect("rm index");
    // The directory's time survives the creation of its children.
    let d = std::fs::symlink_metadata(l.join("dir")).expect("dir");
    assert_eq!(d.mtime(), mtime as i64);
}

#[test]
fn diff_id_mismatch_is_reported() {
    let s = Scratch::new();
    let tar = RawTar::new().file("a", b"x").finish();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err =
        unpack_layer(&tar[..], &s.layer(), &Limits::default(), Some(&wrong), None).expect_err("mismatch");
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
}

/// Measures unpacking a layer blob `$BERTH_BENCH_LAYER` into `$BERTH_BENCH_ROOT` (by hand, like
/// `bench_pull_debian` in tests/store.rs).
#[test]
#[ignore = "a measurement, run by hand"]
fn bench_unpack_layer() {
    let (Ok(layer), Ok(root)) = (
        std::env::var("BERTH_BENCH_LAYER"),
        std::env::var("BERTH_BENCH_ROOT"),
    ) else {
        return;
    };
    let data = std::fs::read(&layer).expect("read layer");
    for run in 0..3 {
        let dir = Path::new(&root).join(format!("unpack-{run}-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir");
        let t = std::time::Instant::now();
        let out = unpack_layer(
            &data[..],
            &dir,
            &Limits::default(),
            None,
            Some(&dir.with_extension("split")),
        )
        .expect("unpack");
        eprintln!(
            "run {run}: unpack took {:?} ({} entries)",
            t.elapsed(),
            out.stats.entries
        );
        let t = std::time::Instant::now();
        let mut d = flate2::read::MultiGzDecoder::new(&data[..]);
        let mut tar = Vec::new();
        let n = std::io::copy(&mut d, &mut tar).expect("gunzip");
        eprintln!("run {run}: gunzip alone took {:?} ({n} bytes)", t.elapsed());
        let dir2 = Path::new(&root).join(format!("untar-{run}-{}", std::process::id()));
        std::fs::create_dir(&dir2).expect("mkdir");
        let t = std::time::Instant::now();
        unpack_tar(&tar[..], &dir2, &Limits::default(), None).expect("untar");
        eprintln!(
            "run {run}: unpack of the plain tar from memory took {:?}",
            t.elapsed()
        );
        let t = std::time::Instant::now();
        let h = {
            use sha2::Digest;
            sha2::Sha256::digest(&data)
        };
        eprintln!("run {run}: sha256 of the blob took {:?} {}", t.elapsed(), h.len());
    }
}

#[test]
fn non_utf8_names_are_refused_not_renamed() {
    let s = Scratch::new();
    let mut raw = RawTar::new();
    raw.file("ok", b"1");
    let mut tar = raw.finish();
    // Patch the name to contain an invalid UTF-8 byte and fix the checksum.
    tar[1] = 0xff;
    let h = tar::Header::from_byte_slice(&tar[..512]);
    let mut h = h.clone();
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    let err = unpack(&s, &tar).expect_err("a non-UTF-8 name must fail");
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    s.assert_host_untouched();
}
