//! A push-style structural check of a tar stream (an XVA is one): header checksums, entry sizes, the first entry's
//! name, and the end-of-archive marker (two zero blocks). It is what tells a complete XVA from one cut short, since
//! XAPI's `/export` ends by closing the connection; it reads headers only and skips entry data without looking.

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
}

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
        }
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
                        let disks = super::ova::check(&text).map_err(|e| TarError::Ova(e.to_string()))?;
                        self.disks = Some(disks);
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
        self.entries += 1;
        Ok(())
    }

    /// Ends the stream: an error unless the end-of-archive marker was read.
    pub fn finish(&self) -> Result<(), TarError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(TarError::Truncated { position: self.pos })
        }
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
}
