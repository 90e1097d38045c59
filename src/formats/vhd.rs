//! VHD (Microsoft Virtual Hard Disk) structures and a forward-only streaming parser.
//!
//! What it is for: decoding and encoding the 512-byte footer and the 1024-byte dynamic-disk header, laying out a
//! dynamic VHD for a writer ([`DynamicLayout`]), and reading a dynamic or differencing VHD that arrives as a
//! stream ([`VhdStreamParser`]), the way XAPI's `vhd-tool` does on `PUT /import_raw_vdi?format=vhd`: footer,
//! header, BAT and then every block at increasing offsets, emitting only the sectors whose bitmap bit is set.
//!
//! What it deliberately does not do: IO, buffering of block data (data events borrow the caller's input), fixed
//! VHDs (they have no header and cannot be streamed; they are rejected with a clear error), or following parent
//! locators of differencing disks (a differencing VHD is applied onto whatever the target already holds).
//!
//! All integers are big-endian; a sector is 512 bytes.

use std::fmt;

/// Bytes in a sector.
pub const SECTOR: u64 = 512;
/// Size of the footer (and of each copy of it).
pub const FOOTER_SIZE: usize = 512;
/// Size of the dynamic-disk header.
pub const HEADER_SIZE: usize = 1024;
/// The default block size of dynamic VHDs (2 MiB), used by XAPI, XO and qemu-img.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 * 1024 * 1024;
/// BAT value of an unallocated block.
pub const BAT_UNUSED: u32 = 0xFFFF_FFFF;
/// Largest virtual size XAPI exports as VHD (2040 GiB, `Constants.max_vhd_size`).
pub const MAX_VHD_SIZE: u64 = 2040 * 1024 * 1024 * 1024;

const FOOTER_COOKIE: &[u8; 8] = b"conectix";
const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
const VERSION_1_0: u32 = 0x0001_0000;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z).
pub const VHD_EPOCH_OFFSET: u64 = 946_684_800;

/// The `diskType` field of the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// Type 2: raw data followed by a footer; no header, no BAT.
    Fixed,
    /// Type 3: sparse, with a header and a BAT.
    Dynamic,
    /// Type 4: like dynamic, holding only the sectors that differ from a parent.
    Differencing,
}

impl DiskType {
    fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }
}

/// Why a VHD was refused. Each variant says what a user needs to fix their file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VhdError {
    /// The footer does not start with `conectix`.
    BadFooterCookie,
    /// The footer checksum does not match its content.
    BadFooterChecksum { stored: u32, computed: u32 },
    /// A file format version other than 1.0.
    UnsupportedVersion(u32),
    /// A disk type this code does not know.
    UnknownDiskType(u32),
    /// A fixed VHD: valid, but it cannot be streamed (no header, no BAT); convert it to dynamic first.
    FixedNotSupported,
    /// The footer's original size is larger than its current size.
    OriginalSizeTooLarge { original: u64, current: u64 },
    /// The header does not start with `cxsparse`.
    BadHeaderCookie,
    /// The header checksum does not match its content.
    BadHeaderChecksum { stored: u32, computed: u32 },
    /// The header's own data offset must be all ones.
    BadHeaderDataOffset(u64),
    /// Block size is not a power of two multiple of a sector.
    BadBlockSize(u32),
    /// The BAT has fewer entries than the virtual size needs.
    BatTooSmall { entries: u32, needed: u64 },
    /// A structure or block lies before bytes already consumed, or overlaps another one.
    OutOfOrder { what: &'static str, offset: u64, position: u64 },
    /// A BAT entry points inside the footer, header or BAT, or two blocks overlap.
    BadBlockOffset { block: u32, offset: u64 },
    /// The stream is shorter than its structures require.
    Truncated { position: u64, expected: u64 },
    /// Bytes arrived after the trailing footer.
    TrailingData { position: u64 },
    /// The trailing footer differs from the leading one.
    FooterMismatch,
    /// The declared total length cannot hold the structures the VHD describes.
    LengthTooShort { length: u64, needed: u64 },
    /// The BAT starts further into the file than [`MAX_BAT_OFFSET`]: everything before it would have to be held.
    BatTooFar { offset: u64 },
    /// The BAT has more entries than a VHD of the largest size (2040 GiB) needs.
    BatTooLarge { entries: u32, limit: u64 },
}

/// Furthest a BAT may start: vhd-util, qemu-img and XAPI put it right after the header (byte 1536), with parent
/// locators after it; everything up to the end of the BAT is read before XAPI is called.
pub const MAX_BAT_OFFSET: u64 = 4 << 20;
/// Most BAT entries read (16 MiB of BAT): 2040 GiB in 1 MiB blocks; with XAPI's 2 MiB blocks the limit is 4 MiB.
const MAX_BAT_ENTRIES: u64 = 4 << 20;

impl fmt::Display for VhdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VhdError::BadFooterCookie => write!(f, "not a VHD: footer cookie is not 'conectix'"),
            VhdError::BadFooterChecksum { stored, computed } => write!(
                f,
                "VHD footer checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            VhdError::UnsupportedVersion(v) => write!(f, "unsupported VHD format version {v:#010x}"),
            VhdError::UnknownDiskType(t) => write!(f, "unknown VHD disk type {t}"),
            VhdError::FixedNotSupported => write!(
                f,
                "fixed VHDs cannot be streamed; convert to a dynamic VHD (qemu-img convert -O vpc -o subformat=dynamic) or import as raw"
            ),
            VhdError::OriginalSizeTooLarge { original, current } => write!(
                f,
                "VHD original size {original} is larger than its current size {current}"
            ),
            VhdError::BadHeaderCookie => write!(f, "VHD dynamic header cookie is not 'cxsparse'"),
            VhdError::BadHeaderChecksum { stored, computed } => write!(
                f,
                "VHD header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            VhdError::BadHeaderDataOffset(o) => {
                write!(f, "VHD header data offset must be 0xFFFFFFFFFFFFFFFF, found {o:#x}")
            }
            VhdError::BadBlockSize(b) => write!(f, "VHD block size {b} is not a power of two of sectors"),
            VhdError::BatTooSmall { entries, needed } => {
                write!(f, "VHD BAT has {entries} entries but the disk size needs {needed}")
            }
            VhdError::OutOfOrder { what, offset, position } => write!(
                f,
                "VHD {what} at byte {offset} comes before byte {position} already read: the VHD is not stream-ordered"
            ),
            VhdError::BadBlockOffset { block, offset } => {
                write!(f, "VHD block {block} at byte {offset} overlaps metadata or another block")
            }
            VhdError::Truncated { position, expected } => {
                write!(f, "VHD truncated at byte {position}, expected at least {expected} bytes")
            }
            VhdError::TrailingData { position } => {
                write!(f, "unexpected data after the VHD trailing footer at byte {position}")
            }
            VhdError::FooterMismatch => write!(f, "VHD trailing footer differs from the leading footer"),
            VhdError::LengthTooShort { length, needed } => {
                write!(f, "declared length {length} is shorter than the VHD's {needed} bytes")
            }
            VhdError::BatTooFar { offset } => write!(
                f,
                "the BAT starts at byte {offset}: it must start within the first {} MiB (vhd-util, qemu-img and XAPI \
                 put it right after the header)",
                MAX_BAT_OFFSET >> 20
            ),
            VhdError::BatTooLarge { entries, limit } => {
                write!(f, "the BAT has {entries} entries, more than the {limit} a VHD of this size can use")
            }
        }
    }
}

impl std::error::Error for VhdError {}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// One's complement of the byte sum, skipping the 4-byte checksum field at `skip`.
pub fn checksum(bytes: &[u8], skip: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(skip..skip + 4).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// Cylinders, heads and sectors per track, as the VHD specification computes them from a size.
pub fn geometry_for(size: u64) -> (u16, u8, u8) {
    let mut total = size / SECTOR;
    let max = 65535u64 * 16 * 255;
    if total > max {
        total = max;
    }
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255u64;
        heads = 16u64;
        cth = total / spt;
    } else {
        let mut s = 17u64;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    let cylinders = (cth / heads).min(65535);
    (cylinders as u16, heads as u8, spt as u8)
}

/// The 512-byte VHD footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdFooter {
    pub features: u32,
    pub data_offset: u64,
    /// Seconds since 2000-01-01T00:00:00Z.
    pub timestamp: u32,
    pub creator_application: [u8; 4],
    pub creator_version: u32,
    pub creator_host_os: u32,
    pub original_size: u64,
    /// The virtual size in bytes.
    pub current_size: u64,
    pub geometry: (u16, u8, u8),
    pub disk_type: DiskType,
    pub uuid: [u8; 16],
    pub saved_state: u8,
}

impl VhdFooter {
    /// A footer for a new dynamic VHD of `size` bytes whose header follows it at byte 512.
    pub fn new_dynamic(size: u64, uuid: [u8; 16], timestamp: u32) -> Self {
        VhdFooter {
            features: 2,
            data_offset: FOOTER_SIZE as u64,
            timestamp,
            creator_application: *b"xsim",
            creator_version: VERSION_1_0,
            creator_host_os: 0x5769_326B, // "Wi2k", what most writers put here
            original_size: size,
            current_size: size,
            geometry: geometry_for(size),
            disk_type: DiskType::Dynamic,
            uuid,
            saved_state: 0,
        }
    }

    /// Decodes and validates a footer (cookie, checksum, version, disk type, sizes).
    pub fn parse(b: &[u8]) -> Result<Self, VhdError> {
        if b.len() < FOOTER_SIZE || &b[0..8] != FOOTER_COOKIE {
            return Err(VhdError::BadFooterCookie);
        }
        let b = &b[..FOOTER_SIZE];
        let stored = be32(b, 64);
        let computed = checksum(b, 64);
        if stored != computed {
            return Err(VhdError::BadFooterChecksum { stored, computed });
        }
        let version = be32(b, 12);
        if version != VERSION_1_0 {
            return Err(VhdError::UnsupportedVersion(version));
        }
        let disk_type = match be32(b, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => return Err(VhdError::UnknownDiskType(t)),
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[68..84]);
        let mut creator_application = [0u8; 4];
        creator_application.copy_from_slice(&b[28..32]);
        Ok(VhdFooter {
            features: be32(b, 8),
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_application,
            creator_version: be32(b, 32),
            creator_host_os: be32(b, 36),
            original_size: be64(b, 40),
            current_size: be64(b, 48),
            geometry: (u16::from_be_bytes([b[56], b[57]]), b[58], b[59]),
            disk_type,
            uuid,
            saved_state: b[84],
        })
    }

    /// Encodes the footer with a correct checksum.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(FOOTER_COOKIE);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&VERSION_1_0.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_application);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_host_os.to_be_bytes());
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.0.to_be_bytes());
        b[58] = self.geometry.1;
        b[59] = self.geometry.2;
        b[60..64].copy_from_slice(&self.disk_type.code().to_be_bytes());
        b[68..84].copy_from_slice(&self.uuid);
        b[84] = self.saved_state;
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The 1024-byte dynamic-disk header (parent locators are kept as raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub parent_uuid: [u8; 16],
    pub parent_timestamp: u32,
    /// UTF-16BE parent name and the 8 parent locators, bytes 64..768, kept verbatim.
    pub parent_info: Vec<u8>,
}

impl VhdHeader {
    /// A header for a dynamic disk of `size` bytes with 2 MiB blocks and its BAT at `table_offset`.
    pub fn new_dynamic(size: u64, table_offset: u64) -> Self {
        let entries = size.div_ceil(u64::from(DEFAULT_BLOCK_SIZE));
        VhdHeader {
            table_offset,
            max_table_entries: u32::try_from(entries).unwrap_or(u32::MAX),
            block_size: DEFAULT_BLOCK_SIZE,
            parent_uuid: [0; 16],
            parent_timestamp: 0,
            parent_info: vec![0; 768 - 64],
        }
    }

    /// Decodes and validates a header (cookie, checksum, data offset, version, block size).
    pub fn parse(b: &[u8]) -> Result<Self, VhdError> {
        if b.len() < HEADER_SIZE || &b[0..8] != HEADER_COOKIE {
            return Err(VhdError::BadHeaderCookie);
        }
        let b = &b[..HEADER_SIZE];
        let stored = be32(b, 36);
        let computed = checksum(b, 36);
        if stored != computed {
            return Err(VhdError::BadHeaderChecksum { stored, computed });
        }
        let data_offset = be64(b, 8);
        if data_offset != u64::MAX {
            return Err(VhdError::BadHeaderDataOffset(data_offset));
        }
        let version = be32(b, 24);
        if version != VERSION_1_0 {
            return Err(VhdError::UnsupportedVersion(version));
        }
        let block_size = be32(b, 32);
        if block_size < SECTOR as u32 || !block_size.is_power_of_two() {
            return Err(VhdError::BadBlockSize(block_size));
        }
        let mut parent_uuid = [0u8; 16];
        parent_uuid.copy_from_slice(&b[40..56]);
        Ok(VhdHeader {
            table_offset: be64(b, 16),
            max_table_entries: be32(b, 28),
            block_size,
            parent_uuid,
            parent_timestamp: be32(b, 56),
            parent_info: b[64..768].to_vec(),
        })
    }

    /// Encodes the header with a correct checksum.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(HEADER_COOKIE);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&VERSION_1_0.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        b[40..56].copy_from_slice(&self.parent_uuid);
        b[56..60].copy_from_slice(&self.parent_timestamp.to_be_bytes());
        let n = self.parent_info.len().min(768 - 64);
        b[64..64 + n].copy_from_slice(&self.parent_info[..n]);
        let sum = checksum(&b, 36);
        b[36..40].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Bytes of the sector bitmap that precedes each block's data, rounded up to a sector.
    pub fn bitmap_size(&self) -> u64 {
        let sectors = u64::from(self.block_size) / SECTOR;
        sectors.div_ceil(8).div_ceil(SECTOR) * SECTOR
    }

    /// Bytes of the BAT, rounded up to a sector.
    pub fn bat_size(&self) -> u64 {
        (u64::from(self.max_table_entries) * 4).div_ceil(SECTOR) * SECTOR
    }
}

/// Where everything goes in a dynamic VHD written front to back: footer, header, BAT, the allocated blocks in
/// ascending order, footer. Used by writers that stream a VHD without seeking.
#[derive(Debug, Clone)]
pub struct DynamicLayout {
    pub footer: VhdFooter,
    pub header: VhdHeader,
    /// Allocated block indices, ascending.
    pub blocks: Vec<u32>,
}

impl DynamicLayout {
    /// Lays out a dynamic VHD of `size` bytes holding `blocks` (indices of 2 MiB blocks; sorted here).
    pub fn new(size: u64, mut blocks: Vec<u32>, uuid: [u8; 16], timestamp: u32) -> Self {
        blocks.sort_unstable();
        blocks.dedup();
        let footer = VhdFooter::new_dynamic(size, uuid, timestamp);
        let header = VhdHeader::new_dynamic(size, (FOOTER_SIZE + HEADER_SIZE) as u64);
        DynamicLayout { footer, header, blocks }
    }

    /// Byte offset of the first block.
    fn first_block_offset(&self) -> u64 {
        self.header.table_offset + self.header.bat_size()
    }

    /// Bytes one stored block takes (bitmap and data).
    pub fn stored_block_size(&self) -> u64 {
        self.header.bitmap_size() + u64::from(self.header.block_size)
    }

    /// Footer, header and BAT: the bytes that precede the first block.
    pub fn prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.first_block_offset() as usize);
        out.extend_from_slice(&self.footer.to_bytes());
        out.extend_from_slice(&self.header.to_bytes());
        let mut bat = vec![0xFFu8; self.header.bat_size() as usize];
        let first_sector = self.first_block_offset() / SECTOR;
        let per_block = self.stored_block_size() / SECTOR;
        for (i, &b) in self.blocks.iter().enumerate() {
            let sector = first_sector + i as u64 * per_block;
            let at = b as usize * 4;
            if at + 4 <= bat.len() {
                bat[at..at + 4].copy_from_slice(&(sector as u32).to_be_bytes());
            }
        }
        out.extend_from_slice(&bat);
        out
    }

    /// The bitmap written before each block: every sector present.
    pub fn full_bitmap(&self) -> Vec<u8> {
        vec![0xFF; self.header.bitmap_size() as usize]
    }

    /// Total length of the file.
    pub fn total_len(&self) -> u64 {
        self.first_block_offset() + self.blocks.len() as u64 * self.stored_block_size() + FOOTER_SIZE as u64
    }
}

/// What the streaming parser found, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum VhdEvent<'a> {
    /// The leading footer, validated.
    Footer(VhdFooter),
    /// The dynamic header, validated against the footer.
    Header(VhdHeader),
    /// Sectors present in the VHD: `data` belongs at virtual byte `offset`. Borrowed from the input.
    Data { offset: u64, data: &'a [u8] },
    /// The trailing footer was read and matches the leading one; nothing more may follow.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Footer,
    Header,
    Bat,
    Bitmap(usize),
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Gather `len` bytes starting at stream offset `at` (bytes before `at` are skipped).
    Gather {
        at: u64,
        len: u64,
        want: Want,
    },
    /// Pass `len` bytes of block `block` starting at `at` through as data.
    Stream {
        at: u64,
        len: u64,
        block: usize,
    },
    Done,
}

/// A push-style parser for a dynamic or differencing VHD arriving front to back.
///
/// Feed it with [`push`](Self::push) in chunks of any size; it calls the sink with [`VhdEvent`]s. Call
/// [`finish`](Self::finish) at end of input to learn whether the VHD was complete. If `total_len` is given (an
/// HTTP Content-Length), the trailing footer is expected at `total_len - 512`, as XAPI does; otherwise it is
/// expected right after the last block.
#[derive(Debug)]
pub struct VhdStreamParser {
    total_len: Option<u64>,
    pos: u64,
    step: Step,
    buf: Vec<u8>,
    footer: Option<(VhdFooter, [u8; FOOTER_SIZE])>,
    header: Option<VhdHeader>,
    /// (physical byte offset, block index), ascending by offset.
    blocks: Vec<(u64, u32)>,
    bitmap: Vec<u8>,
    end_of_structures: u64,
}

impl VhdStreamParser {
    /// A parser expecting the stream to be exactly `total_len` bytes when known.
    pub fn new(total_len: Option<u64>) -> Self {
        VhdStreamParser {
            total_len,
            pos: 0,
            step: Step::Gather { at: 0, len: FOOTER_SIZE as u64, want: Want::Footer },
            buf: Vec::new(),
            footer: None,
            header: None,
            blocks: Vec::new(),
            bitmap: Vec::new(),
            end_of_structures: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The leading footer once parsed.
    pub fn footer(&self) -> Option<&VhdFooter> {
        self.footer.as_ref().map(|(f, _)| f)
    }

    /// The header once parsed.
    pub fn header(&self) -> Option<&VhdHeader> {
        self.header.as_ref()
    }

    /// The exact length of the file, known once the BAT is parsed: end of the last block plus the trailing
    /// footer (what a writer without a Content-Length must announce).
    pub fn expected_len(&self) -> Option<u64> {
        match self.step {
            Step::Gather { want: Want::Footer | Want::Header | Want::Bat, .. } => None,
            _ => Some(self.trailer_offset() + FOOTER_SIZE as u64),
        }
    }

    /// Whether the trailing footer has been read.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    fn trailer_offset(&self) -> u64 {
        match self.total_len {
            Some(l) => l.saturating_sub(FOOTER_SIZE as u64),
            None => self.end_of_structures,
        }
    }

    /// Consumes `input`, calling `sink` for each event. Stops at the first error; the parser is then unusable.
    pub fn push<'a, E>(
        &mut self,
        mut input: &'a [u8],
        sink: &mut dyn FnMut(VhdEvent<'a>) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        while !input.is_empty() {
            match self.step {
                Step::Done => return Err(PushError::Vhd(VhdError::TrailingData { position: self.pos })),
                Step::Gather { at, len, want } => {
                    if self.pos < at {
                        let skip = (at - self.pos).min(input.len() as u64) as usize;
                        input = &input[skip..];
                        self.pos += skip as u64;
                        continue;
                    }
                    let need = (len as usize).saturating_sub(self.buf.len());
                    let take = need.min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.pos += take as u64;
                    if self.buf.len() as u64 == len {
                        let bytes = std::mem::take(&mut self.buf);
                        self.complete(want, &bytes, sink)?;
                    }
                }
                Step::Stream { at, len, block } => {
                    if self.pos < at {
                        let skip = (at - self.pos).min(input.len() as u64) as usize;
                        input = &input[skip..];
                        self.pos += skip as u64;
                        continue;
                    }
                    let done = self.pos - at;
                    let take = (len - done).min(input.len() as u64) as usize;
                    self.emit_data(block, done, &input[..take], sink)?;
                    input = &input[take..];
                    self.pos += take as u64;
                    if done + take as u64 == len {
                        self.next_block(block + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: an error unless the trailing footer was read.
    pub fn finish(&self) -> Result<(), VhdError> {
        match self.step {
            Step::Done => Ok(()),
            Step::Gather { at, len, .. } | Step::Stream { at, len, .. } => {
                Err(VhdError::Truncated { position: self.pos, expected: at + len })
            }
        }
    }

    fn complete<'a, E>(
        &mut self,
        want: Want,
        bytes: &[u8],
        sink: &mut dyn FnMut(VhdEvent<'a>) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        match want {
            Want::Footer => {
                let footer = VhdFooter::parse(bytes)?;
                match footer.disk_type {
                    DiskType::Fixed => return Err(VhdError::FixedNotSupported.into()),
                    DiskType::Dynamic | DiskType::Differencing => {}
                }
                if footer.original_size > footer.current_size {
                    return Err(VhdError::OriginalSizeTooLarge {
                        original: footer.original_size,
                        current: footer.current_size,
                    }
                    .into());
                }
                let at = footer.data_offset;
                self.order_check("header", at)?;
                let mut raw = [0u8; FOOTER_SIZE];
                raw.copy_from_slice(bytes);
                self.footer = Some((footer.clone(), raw));
                self.step = Step::Gather { at, len: HEADER_SIZE as u64, want: Want::Header };
                sink(VhdEvent::Footer(footer)).map_err(PushError::Sink)?;
            }
            Want::Header => {
                let header = VhdHeader::parse(bytes)?;
                let size = self.footer.as_ref().map_or(0, |(f, _)| f.current_size);
                let needed = size.div_ceil(u64::from(header.block_size));
                if u64::from(header.max_table_entries) < needed {
                    return Err(VhdError::BatTooSmall { entries: header.max_table_entries, needed }.into());
                }
                // Bounded by the disk (or the format's largest disk, for BATs made to grow into): the BAT is held
                // whole, so a header must not make the edge hold gigabytes.
                let limit = needed.max(MAX_VHD_SIZE.div_ceil(u64::from(header.block_size))).min(MAX_BAT_ENTRIES);
                if u64::from(header.max_table_entries) > limit {
                    return Err(VhdError::BatTooLarge { entries: header.max_table_entries, limit }.into());
                }
                if header.table_offset > MAX_BAT_OFFSET {
                    return Err(VhdError::BatTooFar { offset: header.table_offset }.into());
                }
                self.order_check("BAT", header.table_offset)?;
                self.step = Step::Gather { at: header.table_offset, len: header.bat_size(), want: Want::Bat };
                self.header = Some(header.clone());
                sink(VhdEvent::Header(header)).map_err(PushError::Sink)?;
            }
            Want::Bat => self.read_bat(bytes)?,
            Want::Bitmap(i) => {
                self.bitmap = bytes.to_vec();
                let (phys, _) = self.blocks[i];
                let (bitmap_size, block_size) = self.block_geometry();
                self.step = Step::Stream { at: phys + bitmap_size, len: block_size, block: i };
            }
            Want::Trailer => {
                let same = self.footer.as_ref().is_some_and(|(_, raw)| raw[..] == bytes[..]);
                if !same {
                    return Err(VhdError::FooterMismatch.into());
                }
                self.step = Step::Done;
                sink(VhdEvent::End).map_err(PushError::Sink)?;
            }
        }
        Ok(())
    }

    fn order_check(&self, what: &'static str, offset: u64) -> Result<(), VhdError> {
        if offset < self.pos {
            return Err(VhdError::OutOfOrder { what, offset, position: self.pos });
        }
        Ok(())
    }

    fn block_geometry(&self) -> (u64, u64) {
        self.header.as_ref().map_or((0, 0), |h| (h.bitmap_size(), u64::from(h.block_size)))
    }

    fn read_bat(&mut self, bytes: &[u8]) -> Result<(), VhdError> {
        let Some(header) = self.header.as_ref() else {
            return Err(VhdError::BadHeaderCookie);
        };
        let entries = header.max_table_entries as usize;
        let stored = header.bitmap_size() + u64::from(header.block_size);
        let bat_end = header.table_offset + header.bat_size();
        let mut blocks: Vec<(u64, u32)> = (0..entries)
            .filter_map(|i| {
                let v = be32(bytes, i * 4);
                (v != BAT_UNUSED).then_some((u64::from(v) * SECTOR, i as u32))
            })
            .collect();
        blocks.sort_unstable();
        let mut floor = bat_end;
        for &(phys, block) in &blocks {
            if phys < floor {
                return Err(VhdError::BadBlockOffset { block, offset: phys });
            }
            floor = phys + stored;
        }
        self.end_of_structures = floor;
        if let Some(total) = self.total_len {
            let needed = floor + FOOTER_SIZE as u64;
            if total < needed {
                return Err(VhdError::LengthTooShort { length: total, needed });
            }
        }
        self.blocks = blocks;
        self.next_block(0)
    }

    fn next_block(&mut self, i: usize) -> Result<(), VhdError> {
        if let Some(&(phys, _)) = self.blocks.get(i) {
            let (bitmap_size, _) = self.block_geometry();
            self.step = Step::Gather { at: phys, len: bitmap_size, want: Want::Bitmap(i) };
        } else {
            let at = self.trailer_offset();
            self.order_check("trailing footer", at)?;
            self.step = Step::Gather { at, len: FOOTER_SIZE as u64, want: Want::Trailer };
        }
        Ok(())
    }

    /// Emits the runs of present sectors in `data`, which starts `done` bytes into block `i`'s data.
    fn emit_data<'a, E>(
        &self,
        i: usize,
        done: u64,
        data: &'a [u8],
        sink: &mut dyn FnMut(VhdEvent<'a>) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        let (_, block_size) = self.block_geometry();
        let size = self.footer.as_ref().map_or(0, |(f, _)| f.current_size);
        let block_start = u64::from(self.blocks[i].1) * block_size;
        let mut off = 0usize;
        while off < data.len() {
            let in_block = done + off as u64;
            let sector = (in_block / SECTOR) as usize;
            let sector_end = (sector as u64 + 1) * SECTOR;
            let present = self.bitmap.get(sector / 8).is_some_and(|b| b & (0x80 >> (sector % 8)) != 0);
            // Extend the run across following sectors with the same presence.
            let mut run_end = sector_end;
            loop {
                if run_end >= done + data.len() as u64 {
                    break;
                }
                let s = (run_end / SECTOR) as usize;
                let p = self.bitmap.get(s / 8).is_some_and(|b| b & (0x80 >> (s % 8)) != 0);
                if p != present {
                    break;
                }
                run_end += SECTOR;
            }
            let end = (run_end.min(done + data.len() as u64) - done) as usize;
            if present {
                let vstart = block_start + in_block;
                if vstart < size {
                    let keep = ((size - vstart) as usize).min(end - off);
                    sink(VhdEvent::Data { offset: vstart, data: &data[off..off + keep] }).map_err(PushError::Sink)?;
                }
            }
            off = end;
        }
        Ok(())
    }
}

/// A failure while pushing: either the VHD is invalid or the sink refused an event.
#[derive(Debug)]
pub enum PushError<E> {
    Vhd(VhdError),
    Sink(E),
}

impl<E> From<VhdError> for PushError<E> {
    fn from(e: VhdError) -> Self {
        PushError::Vhd(e)
    }
}

impl<E: fmt::Display> fmt::Display for PushError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Vhd(e) => e.fmt(f),
            PushError::Sink(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a dynamic VHD of `size` whose allocated blocks hold a byte pattern; returns the file and the raw
    /// disk it describes.
    fn make_vhd(size: u64, blocks: &[u32]) -> (Vec<u8>, Vec<u8>) {
        let layout = DynamicLayout::new(size, blocks.to_vec(), [7; 16], 0);
        let mut file = layout.prefix();
        let mut raw = vec![0u8; size as usize];
        for &b in &layout.blocks {
            file.extend_from_slice(&layout.full_bitmap());
            let start = u64::from(b) * u64::from(DEFAULT_BLOCK_SIZE);
            for i in 0..u64::from(DEFAULT_BLOCK_SIZE) {
                let v = ((start + i) % 251) as u8 ^ 0x5A;
                file.push(v);
                if start + i < size {
                    raw[(start + i) as usize] = v;
                }
            }
        }
        file.extend_from_slice(&layout.footer.to_bytes());
        assert_eq!(file.len() as u64, layout.total_len());
        (file, raw)
    }

    /// A footer and a header for a dynamic disk of `size` whose header is changed by `edit`.
    fn footer_and_header(size: u64, edit: impl Fn(&mut VhdHeader)) -> Vec<u8> {
        let mut b = VhdFooter::new_dynamic(size, [1; 16], 0).to_bytes().to_vec();
        let mut h = VhdHeader::new_dynamic(size, 1536);
        edit(&mut h);
        b.extend_from_slice(&h.to_bytes());
        b
    }

    /// The BAT is held whole before XAPI is called: a header cannot place it terabytes in, nor make it gigabytes.
    #[test]
    fn the_bat_is_bounded() {
        let first = |b: &[u8]| {
            let mut p = VhdStreamParser::new(None);
            p.push(b, &mut |_| -> Result<(), ()> { Ok(()) }).err().map(|e| match e {
                PushError::Vhd(v) => v,
                PushError::Sink(()) => unreachable!(),
            })
        };
        assert_eq!(first(&footer_and_header(1 << 30, |_| {})), None);
        let far = footer_and_header(1 << 30, |h| h.table_offset = 1 << 40);
        assert_eq!(first(&far), Some(VhdError::BatTooFar { offset: 1 << 40 }));
        assert!(VhdError::BatTooFar { offset: 1 << 40 }.to_string().contains("within the first 4 MiB"));
        assert_eq!(first(&footer_and_header(1 << 30, |h| h.table_offset = MAX_BAT_OFFSET)), None);
        // 2040 GiB in 2 MiB blocks is the most a BAT may describe, whatever the disk's own size.
        let most = MAX_VHD_SIZE / u64::from(DEFAULT_BLOCK_SIZE);
        assert_eq!(first(&footer_and_header(1 << 30, |h| h.max_table_entries = most as u32)), None);
        let huge = footer_and_header(1 << 30, |h| h.max_table_entries = u32::MAX);
        assert_eq!(first(&huge), Some(VhdError::BatTooLarge { entries: u32::MAX, limit: most }));
        // Tiny blocks on a big disk would need a BAT of gigabytes.
        let tiny = footer_and_header(1 << 40, |h| {
            h.block_size = 512;
            h.max_table_entries = u32::MAX;
        });
        assert!(matches!(first(&tiny), Some(VhdError::BatTooLarge { .. })));
    }

    fn parse_in_chunks(file: &[u8], chunk: usize, total: Option<u64>) -> Result<Vec<u8>, VhdError> {
        let mut parser = VhdStreamParser::new(total);
        let size = VhdFooter::parse(file)?.current_size as usize;
        let mut out = vec![0u8; size];
        let mut ended = false;
        for piece in file.chunks(chunk) {
            parser
                .push(piece, &mut |ev| -> Result<(), ()> {
                    match ev {
                        VhdEvent::Data { offset, data } => {
                            out[offset as usize..offset as usize + data.len()].copy_from_slice(data)
                        }
                        VhdEvent::End => ended = true,
                        _ => {}
                    }
                    Ok(())
                })
                .map_err(|e| match e {
                    PushError::Vhd(v) => v,
                    PushError::Sink(()) => unreachable!(),
                })?;
        }
        parser.finish()?;
        assert!(ended);
        Ok(out)
    }

    #[test]
    fn footer_round_trip_and_checksum() {
        let f = VhdFooter::new_dynamic(10 << 20, [1; 16], 42);
        let bytes = f.to_bytes();
        assert_eq!(VhdFooter::parse(&bytes).unwrap(), f);
        let mut bad = bytes;
        bad[100] ^= 1;
        assert!(matches!(VhdFooter::parse(&bad), Err(VhdError::BadFooterChecksum { .. })));
        bad[0] = b'x';
        assert_eq!(VhdFooter::parse(&bad), Err(VhdError::BadFooterCookie));
    }

    #[test]
    fn header_round_trip() {
        let h = VhdHeader::new_dynamic(10 << 20, 1536);
        assert_eq!(VhdHeader::parse(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.bitmap_size(), 512);
        assert_eq!(h.max_table_entries, 5);
    }

    #[test]
    fn geometry_matches_spec_examples() {
        // 10 MiB: 20480 sectors -> 17 spt, 4 heads.
        assert_eq!(geometry_for(10 << 20), (301, 4, 17));
        // Huge disks are capped.
        assert_eq!(geometry_for(3 << 40), (65535, 16, 255));
    }

    #[test]
    fn streams_back_the_raw_disk_in_any_split() {
        let size = 9 * 1024 * 1024 + 4096; // last block partly beyond the disk
        let (file, raw) = make_vhd(size, &[0, 2, 4]);
        for chunk in [1, 511, 512, 4096, 65537, file.len()] {
            let out = parse_in_chunks(&file, chunk, Some(file.len() as u64)).unwrap();
            assert!(out == raw, "chunk size {chunk}");
        }
        let out = parse_in_chunks(&file, 100_000, None).unwrap();
        assert!(out == raw);
    }

    #[test]
    fn expected_len_is_known_after_the_bat() {
        let (file, _) = make_vhd(5 << 20, &[1]);
        let mut p = VhdStreamParser::new(None);
        p.push(&file[..2000], &mut |_| -> Result<(), ()> { Ok(()) }).unwrap();
        assert_eq!(p.expected_len(), None);
        p.push(&file[2000..4096], &mut |_| -> Result<(), ()> { Ok(()) }).unwrap();
        assert_eq!(p.expected_len(), Some(file.len() as u64));
    }

    #[test]
    fn rejects_fixed_truncated_mismatched_and_trailing() {
        let mut fixed = VhdFooter::new_dynamic(1 << 20, [0; 16], 0);
        fixed.disk_type = DiskType::Fixed;
        fixed.data_offset = u64::MAX;
        let mut p = VhdStreamParser::new(None);
        let r = p.push(&fixed.to_bytes(), &mut |_| -> Result<(), ()> { Ok(()) });
        assert!(matches!(r, Err(PushError::Vhd(VhdError::FixedNotSupported))));

        let (file, _) = make_vhd(4 << 20, &[1]);
        let cut = &file[..file.len() - 100];
        assert!(matches!(parse_in_chunks(cut, 4096, None), Err(VhdError::Truncated { .. })));

        let mut other = file.clone();
        let n = other.len();
        other[n - 512 + 100] ^= 0xFF;
        assert_eq!(parse_in_chunks(&other, 4096, None), Err(VhdError::FooterMismatch));

        let mut longer = file.clone();
        longer.extend_from_slice(&[0; 512]);
        assert!(matches!(parse_in_chunks(&longer, 4096, Some(file.len() as u64)), Err(VhdError::TrailingData { .. })));
        assert!(matches!(parse_in_chunks(&file, 4096, Some(1000)), Err(VhdError::LengthTooShort { .. })));
    }

    #[test]
    fn partial_bitmaps_write_only_present_sectors() {
        let layout = DynamicLayout::new(2 << 20, vec![0], [0; 16], 0);
        let mut file = layout.prefix();
        let mut bitmap = vec![0u8; 512];
        bitmap[0] = 0b1010_0000; // sectors 0 and 2
        file.extend_from_slice(&bitmap);
        file.extend(std::iter::repeat_n(0xABu8, DEFAULT_BLOCK_SIZE as usize));
        file.extend_from_slice(&layout.footer.to_bytes());
        let mut seen = Vec::new();
        let mut p = VhdStreamParser::new(Some(file.len() as u64));
        p.push(&file, &mut |ev| -> Result<(), ()> {
            if let VhdEvent::Data { offset, data } = ev {
                seen.push((offset, data.len()));
            }
            Ok(())
        })
        .unwrap();
        p.finish().unwrap();
        assert_eq!(seen, vec![(0, 512), (1024, 512)]);
    }

    #[test]
    fn out_of_order_blocks_are_refused() {
        let (mut file, _) = make_vhd(4 << 20, &[0, 1]);
        // Point block 1 back at the BAT.
        let bat = 1536;
        file[bat + 4..bat + 8].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(parse_in_chunks(&file, 4096, None), Err(VhdError::BadBlockOffset { .. })));
    }
}
