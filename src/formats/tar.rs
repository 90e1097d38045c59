//! A push-style structural check of a tar stream (an XVA is one): header checksums, entry sizes, the first entry's
//! name, and the end-of-archive marker (two zero blocks). It is what tells a complete XVA from one cut short, since
//! XAPI's `/export` ends by closing the connection; it reads headers only and skips entry data without looking.
//!
//! [`TarCheck::xva_upload`] also checks an XVA's disk chunks as XAPI's importer reads them
//! (`ocaml/xapi/stream_vdi.ml`, `recv_all_vdi` and `verify_inline_checksum`): after `ova.xml`, only chunks
//! `<disk>/<number>` of the disks it declares, numbers increasing per disk, each chunk followed by its checksum
//! member (`.xxhash`: XXH64 as 16 upper-case hex digits; `.checksum`: SHA-1 as 40 lower-case ones), whose text must
//! be exactly the digest of the chunk's data.

use std::fmt;

const BLOCK: usize = 512;

/// Why a tar stream was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarError {
    BadChecksum {
        position: u64,
    },
    BadSize {
        position: u64,
    },
    /// The first entry is not the one required (`ova.xml` for an XVA).
    FirstEntry {
        expected: String,
        found: String,
    },
    /// A single zero block followed by more entries, or non-zero bytes after the end-of-archive marker.
    AfterEnd {
        position: u64,
    },
    /// The stream ended before its end-of-archive marker.
    Truncated {
        position: u64,
    },
    /// An XVA's `ova.xml` is not as XAPI writes it.
    Ova(String),
    /// An XVA entry belongs to a disk `ova.xml` does not declare.
    UndeclaredDisk {
        name: String,
    },
    /// An XVA's disk chunks are not as XAPI's importer reads them (order, checksum member, digest).
    Chunk(String),
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarError::BadChecksum { position } => write!(f, "tar header checksum mismatch at byte {position}"),
            TarError::BadSize { position } => write!(f, "unreadable tar entry size at byte {position}"),
            TarError::FirstEntry { expected, found } => write!(f, "the first tar entry is {found:?}, not {expected:?}"),
            TarError::AfterEnd { position } => write!(f, "data after the end of the tar archive at byte {position}"),
            TarError::Truncated { position } => write!(f, "the tar archive ends early, at byte {position}"),
            TarError::Ova(e) => f.write_str(e),
            TarError::UndeclaredDisk { name } => write!(f, "entry {name:?} is not a disk ova.xml declares"),
            TarError::Chunk(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TarError {}

/// The check's progress.
#[derive(Debug)]
pub struct TarCheck {
    first: Option<String>,
    pos: u64,
    /// Bytes of entry data (with padding) still to skip.
    skip: u64,
    header: Vec<u8>,
    zero_blocks: u8,
    entries: u64,
    /// An XVA's `ova.xml` being read (its bytes, and how many are still to come).
    ova: Option<(Vec<u8>, u64)>,
    /// The disk ids `ova.xml` declares, once it was read.
    disks: Option<std::collections::HashSet<String>>,
    /// Checking an uploaded XVA's chunks: their state, when asked for.
    chunks: Option<Box<Chunks>>,
    /// Bytes of the current entry's data (without padding) still to come.
    data_left: u64,
}

/// A chunk's checksum member: XXH64 (`.xxhash`) or SHA-1 (`.checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SumKind {
    Xxhash,
    Sha1,
}

/// What is being read of an uploaded XVA's disks.
#[derive(Default)]
struct Chunks {
    /// The checksum kind this archive uses, once its first checksum member was seen (until then both are computed).
    kind: Option<SumKind>,
    /// The chunk whose data is being read, with its digests.
    reading: Option<(String, Option<twox_hash::XxHash64>, Option<sha1::Sha1>)>,
    /// A chunk read whose checksum member must come next: its name and digests (hex, as XAPI writes them).
    awaiting: Option<(String, Option<String>, Option<String>)>,
    /// A checksum member being read: its chunk, the digest it must hold, and its text so far.
    sum: Option<(String, String, Vec<u8>)>,
    /// The last chunk number of each disk (as a string: XAPI compares them so).
    last: std::collections::HashMap<String, String>,
    /// The disks XAPI reads data for, with their size and how far XAPI's importer has got (`recv_all_vdi`:
    /// skipped chunks count as the first chunk's length, the archive's first chunk).
    disks: std::collections::HashMap<String, (u64, u64)>,
    /// The length of the archive's first chunk.
    first_len: Option<u64>,
}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks").field("kind", &self.kind).field("awaiting", &self.awaiting).finish_non_exhaustive()
    }
}

/// The longest checksum member (a SHA-1 in hex, with room for a newline).
const MAX_SUM: u64 = 64;

/// The largest `ova.xml` read (XAPI's are a few hundred KiB for VMs with many devices).
const MAX_OVA_XML: u64 = 16 << 20;

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large sizes.
        return Some(field[1..].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)));
    }
    let s: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn name(h: &[u8]) -> String {
    let field = |r: std::ops::Range<usize>| -> String {
        String::from_utf8_lossy(h[r].split(|&b| b == 0).next().unwrap_or_default()).into_owned()
    };
    let (prefix, name) = (field(345..500), field(0..100));
    if &h[257..262] == b"ustar" && !prefix.is_empty() {
        format!("{prefix}/{name}")
    } else {
        name
    }
}

impl TarCheck {
    /// A check requiring the first entry to be named `first`, when given.
    pub fn new(first: Option<&str>) -> TarCheck {
        TarCheck {
            first: first.map(str::to_string),
            pos: 0,
            skip: 0,
            header: Vec::new(),
            zero_blocks: 0,
            entries: 0,
            ova: None,
            disks: None,
            chunks: None,
            data_left: 0,
        }
    }

    /// A check of an uploaded XVA: `ova.xml` first, then disk chunks checked as XAPI's importer reads them.
    pub fn xva_upload() -> TarCheck {
        TarCheck { chunks: Some(Box::default()), ..TarCheck::new(Some("ova.xml")) }
    }

    /// Whether `ova.xml` was read and is valid.
    pub fn ova_read(&self) -> bool {
        self.disks.is_some()
    }

    /// For an upload: whether everything XAPI's importer reads has come (`ova.xml`, then every disk it streams up to
    /// its size, each chunk with its checksum): XAPI completes the import then, whatever follows.
    pub fn importer_has_all(&self) -> bool {
        let Some(c) = self.chunks.as_ref().filter(|_| self.ova_read()) else { return false };
        c.reading.is_none()
            && c.awaiting.is_none()
            && c.sum.is_none()
            && c.disks.values().all(|(size, offset)| offset >= size)
    }

    /// Whether the end-of-archive marker was read.
    pub fn is_done(&self) -> bool {
        self.zero_blocks >= 2
    }

    /// Entries seen so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Consumes the next bytes of the stream.
    pub fn push(&mut self, mut input: &[u8]) -> Result<(), TarError> {
        while !input.is_empty() {
            if self.is_done() {
                if input.iter().any(|&b| b != 0) {
                    return Err(TarError::AfterEnd { position: self.pos });
                }
                self.pos += input.len() as u64;
                return Ok(());
            }
            if self.skip > 0 {
                let n = self.skip.min(input.len() as u64);
                if let Some((buf, left)) = &mut self.ova {
                    let take = (*left).min(n) as usize;
                    buf.extend_from_slice(&input[..take]);
                    *left -= take as u64;
                    if *left == 0 {
                        let text = String::from_utf8_lossy(buf).into_owned();
                        self.ova = None;
                        let declared = super::ova::check(&text).map_err(|e| TarError::Ova(e.to_string()))?;
                        if let Some(chunks) = &mut self.chunks {
                            chunks.disks = declared.data.iter().map(|(d, size)| (d.clone(), (*size, 0))).collect();
                        }
                        self.disks = Some(declared.vdis);
                    }
                }
                let data = self.data_left.min(n);
                if data > 0 {
                    self.data_left -= data;
                    if let Some(chunks) = &mut self.chunks {
                        chunks.data(&input[..data as usize])?;
                        if self.data_left == 0 {
                            chunks.end_of_data()?;
                        }
                    }
                }
                self.skip -= n;
                self.pos += n;
                input = &input[n as usize..];
                continue;
            }
            let take = (BLOCK - self.header.len()).min(input.len());
            self.header.extend_from_slice(&input[..take]);
            input = &input[take..];
            self.pos += take as u64;
            if self.header.len() == BLOCK {
                let h = std::mem::take(&mut self.header);
                self.header_block(&h)?;
            }
        }
        Ok(())
    }

    fn header_block(&mut self, h: &[u8]) -> Result<(), TarError> {
        let at = self.pos - BLOCK as u64;
        if h.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err(TarError::AfterEnd { position: at });
        }
        let stored = octal(&h[148..156]).ok_or(TarError::BadChecksum { position: at })?;
        let sum: u64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        if stored != sum {
            return Err(TarError::BadChecksum { position: at });
        }
        let size = octal(&h[124..136]).ok_or(TarError::BadSize { position: at })?;
        let entry = name(h);
        if self.entries == 0 {
            if let Some(expected) = &self.first {
                if &entry != expected {
                    return Err(TarError::FirstEntry { expected: expected.clone(), found: entry });
                }
                if expected == "ova.xml" {
                    if size > MAX_OVA_XML {
                        return Err(TarError::Ova(format!("ova.xml: {size} bytes is more than any XAPI writes")));
                    }
                    self.ova = Some((Vec::with_capacity(size as usize), size));
                    if size == 0 {
                        return Err(TarError::Ova("ova.xml: empty".into()));
                    }
                }
            }
        } else if let (Some(disks), Some((folder, _))) = (&self.disks, entry.split_once('/')) {
            if !disks.contains(folder) {
                return Err(TarError::UndeclaredDisk { name: entry });
            }
        }
        // Only regular files and the like carry data; links and directories have none.
        let data = if matches!(h[156], b'1' | b'2' | b'3' | b'4' | b'5' | b'6') { 0 } else { size };
        self.skip = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.data_left = data;
        if self.entries > 0 {
            if let Some(chunks) = &mut self.chunks {
                chunks.entry(&entry, data)?;
                if data == 0 {
                    chunks.end_of_data()?;
                }
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// Ends the stream: an error unless the end-of-archive marker was read.
    pub fn finish(&self) -> Result<(), TarError> {
        if let Some((chunk, ..)) = self.chunks.as_ref().and_then(|c| c.awaiting.as_ref()) {
            return Err(TarError::Chunk(format!("chunk {chunk} is not followed by its checksum member")));
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(TarError::Truncated { position: self.pos })
        }
    }
}

fn chunk_error(msg: String) -> TarError {
    TarError::Chunk(msg)
}

impl Chunks {
    /// A new entry after `ova.xml`, of `size` bytes of data.
    fn entry(&mut self, name: &str, size: u64) -> Result<(), TarError> {
        if let Some((chunk, xxh, sha)) = self.awaiting.take() {
            let (kind, want) = if name == format!("{chunk}.xxhash") {
                (SumKind::Xxhash, xxh)
            } else if name == format!("{chunk}.checksum") {
                (SumKind::Sha1, sha)
            } else {
                return Err(chunk_error(format!("chunk {chunk} is followed by {name:?}, not by its checksum member")));
            };
            if self.kind.is_some_and(|k| k != kind) {
                return Err(chunk_error(format!("{name}: the archive mixes .xxhash and .checksum members")));
            }
            self.kind = Some(kind);
            let want = want.ok_or_else(|| chunk_error(format!("{name}: unexpected checksum kind")))?;
            if size > MAX_SUM {
                return Err(chunk_error(format!("{name}: a checksum member of {size} bytes")));
            }
            self.sum = Some((chunk, want, Vec::new()));
            return Ok(());
        }
        let (disk, number) = name
            .split_once('/')
            .ok_or_else(|| chunk_error(format!("unexpected member {name:?}: only disk chunks follow ova.xml")))?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(chunk_error(format!("unexpected member {name:?}: a chunk is <disk>/<decimal number>")));
        }
        if let Some(last) = self.last.get(disk) {
            if number <= last.as_str() {
                return Err(chunk_error(format!("chunk {name} comes after {disk}/{last}: numbers must increase")));
            }
        }
        let first_len = *self.first_len.get_or_insert(size);
        let previous = self.last.get(disk).and_then(|l| l.parse::<u64>().ok());
        let skipped = number.parse::<u64>().ok().map(|n| previous.map_or(n, |p| n.saturating_sub(p + 1)));
        if let (Some((_, offset)), Some(skipped)) = (self.disks.get_mut(disk), skipped) {
            *offset = offset.saturating_add(skipped.saturating_mul(first_len)).saturating_add(size);
        }
        self.last.insert(disk.to_string(), number.to_string());
        let xxh = (self.kind != Some(SumKind::Sha1)).then(|| twox_hash::XxHash64::with_seed(0));
        let sha = (self.kind != Some(SumKind::Xxhash)).then(<sha1::Sha1 as sha1::Digest>::new);
        self.reading = Some((name.to_string(), xxh, sha));
        Ok(())
    }

    /// Data of the current entry.
    fn data(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        if let Some((_, xxh, sha)) = &mut self.reading {
            if let Some(x) = xxh {
                std::hash::Hasher::write(x, bytes);
            }
            if let Some(s) = sha {
                sha1::Digest::update(s, bytes);
            }
        } else if let Some((_, _, text)) = &mut self.sum {
            text.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The current entry's data is complete.
    fn end_of_data(&mut self) -> Result<(), TarError> {
        if let Some((name, xxh, sha)) = self.reading.take() {
            let xxh = xxh.map(|x| format!("{:016X}", std::hash::Hasher::finish(&x)));
            let sha = sha.map(|s| sha1::Digest::finalize(s).iter().map(|b| format!("{b:02x}")).collect::<String>());
            self.awaiting = Some((name, xxh, sha));
        } else if let Some((chunk, want, text)) = self.sum.take() {
            if text != want.as_bytes() {
                let found = String::from_utf8_lossy(&text).into_owned();
                return Err(chunk_error(format!(
                    "chunk {chunk} fails its checksum: the member says {found:?}, its data digests to {want}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// An `ova.xml` as XAPI writes it, declaring the VDI `Ref:1`.
    fn ova(major: &str) -> Vec<u8> {
        let m = |k: &str, v: &str| format!("<member><name>{k}</name>{v}</member>");
        let version: String = ["hostname", "date", "product_version", "product_brand", "build_number"]
            .iter()
            .map(|k| m(k, "<value>x</value>"))
            .chain([m("xapi_major", major), m("xapi_minor", "<value>20</value>"), m("export_vsn", "<value>2</value>")])
            .collect();
        let vdi = format!(
            "<value><struct>{}{}{}</struct></value>",
            m("class", "<value>VDI</value>"),
            m("id", "<value>Ref:1</value>"),
            m("snapshot", "<value><struct></struct></value>")
        );
        format!(
            "<value><struct>{}{}</struct></value>",
            m("version", &format!("<value><struct>{version}</struct></value>")),
            m("objects", &format!("<value><array><data>{vdi}</data></array></value>"))
        )
        .into_bytes()
    }

    fn archive_with(ova: &[u8], disk: &str) -> Vec<u8> {
        let mut t = header("ova.xml", ova.len() as u64);
        t.extend(ova);
        t.extend(vec![0; ova.len().div_ceil(BLOCK) * BLOCK - ova.len()]);
        t.extend(header(&format!("{disk}/00000000"), 1 << 20));
        t.extend(vec![7; 1 << 20]);
        t.extend(header(&format!("{disk}/00000000.xxhash"), 16));
        t.extend(b"0123456789ABCDEF");
        t.extend(vec![0; BLOCK - 16]);
        t.extend(vec![0; 2 * BLOCK]);
        t
    }

    fn archive() -> Vec<u8> {
        archive_with(&ova("<value>1</value>"), "Ref:1")
    }

    fn run(bytes: &[u8], split: usize) -> Result<(), TarError> {
        let mut c = TarCheck::new(Some("ova.xml"));
        for chunk in bytes.chunks(split) {
            c.push(chunk)?;
        }
        c.finish()
    }

    #[test]
    fn a_whole_archive_passes_in_any_split() {
        let t = archive();
        for split in [1, 100, 512, 8192, t.len()] {
            assert_eq!(run(&t, split), Ok(()), "split {split}");
        }
        let mut padded = t.clone();
        padded.extend(vec![0; 8192]);
        assert_eq!(run(&padded, 4096), Ok(()), "zero padding after the end");
        let mut c = TarCheck::new(None);
        c.push(&t).unwrap();
        assert_eq!(c.entries(), 3);
    }

    #[test]
    fn cut_or_damaged_archives_fail() {
        let t = archive();
        for cut in [0, 100, 512, 2000, t.len() - 1024, t.len() - 512, t.len() - 1] {
            assert!(run(&t[..cut], 4096).is_err(), "cut at {cut}");
        }
        let mut bad = t.clone();
        let second = ova("<value>1</value>").len().div_ceil(BLOCK) * BLOCK + BLOCK;
        bad[second + 10] ^= 1; // a header byte: checksum
        assert!(matches!(run(&bad, 4096), Err(TarError::BadChecksum { .. })));
        let mut other = header("other", 0);
        other.extend(vec![0; 1024]);
        assert!(matches!(run(&other, 512), Err(TarError::FirstEntry { .. })));
        let mut after = t.clone();
        after.push(1);
        assert!(matches!(run(&after, 4096), Err(TarError::AfterEnd { .. })));
        let mut one_zero = header("first", 0);
        one_zero.extend(vec![0; BLOCK]);
        one_zero.extend(header("more", 0));
        let mut c = TarCheck::new(None);
        assert!(matches!(c.push(&one_zero), Err(TarError::AfterEnd { .. })));
    }

    #[test]
    fn ova_xml_must_be_xapis_and_declare_the_disks() {
        assert!(matches!(run(&archive_with(&ova("<value><i4>1</i4></value>"), "Ref:1"), 4096), Err(TarError::Ova(_))));
        assert!(matches!(run(&archive_with(b"<value>nope", "Ref:1"), 100), Err(TarError::Ova(_))));
        assert!(matches!(
            run(&archive_with(&ova("<value>1</value>"), "Ref:9"), 4096),
            Err(TarError::UndeclaredDisk { .. })
        ));
    }

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut t = header(name, data.len() as u64);
        t.extend(data);
        t.extend(vec![0; data.len().div_ceil(BLOCK) * BLOCK - data.len()]);
        t
    }

    fn xxh(data: &[u8]) -> String {
        format!("{:016X}", twox_hash::XxHash64::oneshot(0, data))
    }

    /// An upload: `ova.xml` declaring `Ref:1`, then the given members.
    fn upload(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut t = member("ova.xml", &ova("<value>1</value>"));
        for (name, data) in members {
            t.extend(member(name, data));
        }
        t.extend(vec![0; 2 * BLOCK]);
        t
    }

    fn check_upload(bytes: &[u8], split: usize) -> Result<(), TarError> {
        let mut c = TarCheck::xva_upload();
        for chunk in bytes.chunks(split) {
            c.push(chunk)?;
        }
        c.finish()
    }

    #[test]
    fn upload_chunks_are_checked_as_xapi_reads_them() {
        let (a, b) = (vec![7u8; 1 << 20], vec![9u8; 1000]);
        let good = upload(&[
            ("Ref:1/00000000", a.clone()),
            ("Ref:1/00000000.xxhash", xxh(&a).into_bytes()),
            ("Ref:1/00000003", b.clone()),
            ("Ref:1/00000003.xxhash", xxh(&b).into_bytes()),
            ("Ref:1/00000004", Vec::new()),
            ("Ref:1/00000004.xxhash", xxh(&[]).into_bytes()),
        ]);
        for split in [1000, 4096, 65536, good.len()] {
            assert_eq!(check_upload(&good, split), Ok(()), "split {split}");
        }
        let ova_len = member("ova.xml", &ova("<value>1</value>")).len();
        let mut c = TarCheck::xva_upload();
        c.push(&good[..ova_len]).unwrap();
        // The test's ova.xml declares no VBD, so XAPI streams no disk: it has all it reads from ova.xml on.
        assert!(c.ova_read() && c.importer_has_all());
        c.push(&good[ova_len..ova_len + 600]).unwrap();
        assert!(!c.importer_has_all(), "a chunk being read");
        // SHA-1 members, as older XAPIs wrote (lower-case hex).
        let sha = "da39a3ee5e6b4b0d3255bfef95601890afd80709".as_bytes().to_vec();
        let old = upload(&[("Ref:1/00000000", Vec::new()), ("Ref:1/00000000.checksum", sha)]);
        assert_eq!(check_upload(&old, 4096), Ok(()));
        let broken = |members: &[(&str, Vec<u8>)]| match check_upload(&upload(members), 4096) {
            Err(TarError::Chunk(e)) => e,
            other => panic!("{other:?}"),
        };
        let e = broken(&[("Ref:1/00000000", a.clone()), ("Ref:1/00000000.xxhash", xxh(&b).into_bytes())]);
        assert!(e.contains("fails its checksum"), "{e}");
        let lower = xxh(&a).to_lowercase().into_bytes();
        assert!(broken(&[("Ref:1/00000000", a.clone()), ("Ref:1/00000000.xxhash", lower)]).contains("checksum"));
        let e = broken(&[("Ref:1/00000000", a.clone()), ("Ref:1/00000001", b.clone())]);
        assert!(e.contains("not by its checksum member"), "{e}");
        let e = broken(&[("Ref:1/00000000", a.clone())]);
        assert!(e.contains("not followed by its checksum"), "{e}");
        let e = broken(&[
            ("Ref:1/00000002", b.clone()),
            ("Ref:1/00000002.xxhash", xxh(&b).into_bytes()),
            ("Ref:1/00000001", b.clone()),
        ]);
        assert!(e.contains("must increase"), "{e}");
        assert!(broken(&[("stray", Vec::new())]).contains("only disk chunks"));
        assert!(broken(&[("Ref:1/x1", Vec::new())]).contains("decimal"));
    }

    #[test]
    fn the_importer_has_all_after_the_last_chunk_of_the_last_disk() {
        let m = |k: &str, v: &str| format!("<member><name>{k}</name><value>{v}</value></member>");
        let obj = |class: &str, id: &str, fields: &str| {
            format!("<value><struct>{}{}<member><name>snapshot</name><value><struct>{fields}</struct></value></member></struct></value>", m("class", class), m("id", id))
        };
        let version: String = ["hostname", "date", "product_version", "product_brand", "build_number"]
            .iter()
            .map(|k| m(k, "x"))
            .chain([m("xapi_major", "1"), m("xapi_minor", "20"), m("export_vsn", "2")])
            .collect();
        let size = (2 << 20) + 1000;
        let objects = [
            obj("SR", "Ref:0", &m("content_type", "user")),
            obj("VDI", "Ref:1", &(m("SR", "Ref:0") + &m("virtual_size", &size.to_string()))),
            obj("VBD", "Ref:2", &(m("type", "Disk") + &m("VDI", "Ref:1"))),
        ]
        .concat();
        let version = m("version", &format!("<struct>{version}</struct>"));
        let xml = format!(
            "<value><struct>{version}<member><name>objects</name><value><array><data>{objects}</data></array>\
             </value></member></struct></value>"
        );
        let (a, b) = (vec![1u8; 1 << 20], vec![2u8; 1000]);
        let t = member("ova.xml", xml.as_bytes());
        let parts = [
            member("Ref:1/00000000", &a),
            member("Ref:1/00000000.xxhash", xxh(&a).as_bytes()),
            // Chunk 1 is all zeros, left out; chunk 2 is the last.
            member("Ref:1/00000002", &b),
        ];
        let mut c = TarCheck::xva_upload();
        c.push(&t).unwrap();
        assert!(c.ova_read() && !c.importer_has_all());
        for part in &parts {
            c.push(part).unwrap();
            assert!(!c.importer_has_all());
        }
        c.push(&member("Ref:1/00000002.xxhash", xxh(&b).as_bytes())).unwrap();
        assert!(c.importer_has_all(), "the last chunk's checksum is in");
        assert!(c.finish().is_err(), "but the archive has no end yet");
    }
}
