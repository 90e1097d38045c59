//! Sparse virtual disks: what a VDI holds, costing memory only for the bytes written to it.
//!
//! A disk is a size, optional *synthetic regions* whose content is computed from a seed (deterministic,
//! non-trivial: a mix of zero, incompressible and text-like 64 KiB grains, so a 4 GiB benchmark disk costs no
//! memory), and an overlay of written 64 KiB grains. Cloning a disk (snapshots) shares the written grains.
//! Zero grains are never stored. This module knows nothing of VHD or XVA; the exporters read through [`SparseDisk::read`].

use std::collections::BTreeMap;
use std::sync::Arc;

/// Storage granularity.
pub const GRAIN: u64 = 64 * 1024;

#[derive(Debug, Clone)]
enum Grain {
    /// Written as zeros over a synthetic region.
    Zero,
    Data(Arc<Vec<u8>>),
}

/// A region of the disk whose content is generated from a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synthetic {
    /// Grain-aligned start byte.
    pub start: u64,
    /// End byte (exclusive).
    pub end: u64,
    pub seed: u64,
    /// Percentage of grains that are all zero.
    pub zero_pct: u8,
    /// Percentage of grains that are random (incompressible); the rest is text-like.
    pub random_pct: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zero,
    Random,
    Text,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const WORDS: [&[u8]; 16] = [
    b"the ",
    b"disk ",
    b"block ",
    b"xapi ",
    b"of ",
    b"virtual ",
    b"machine ",
    b"and ",
    b"sector ",
    b"pool ",
    b"host ",
    b"data\n",
    b"storage ",
    b"export ",
    b"to ",
    b"repository ",
];

impl Synthetic {
    fn kind(&self, grain: u64) -> Kind {
        let h = splitmix(self.seed ^ grain.wrapping_mul(0x2545_F491_4F6C_DD1D)) % 100;
        if h < u64::from(self.zero_pct) {
            Kind::Zero
        } else if h < u64::from(self.zero_pct) + u64::from(self.random_pct) {
            Kind::Random
        } else {
            Kind::Text
        }
    }

    fn covers(&self, grain: u64) -> bool {
        let at = grain * GRAIN;
        at >= self.start && at < self.end
    }

    /// Fills `out` (one whole grain) with the content of `grain`.
    fn fill(&self, grain: u64, out: &mut [u8]) {
        let mut state = splitmix(self.seed.rotate_left(17) ^ grain) | 1;
        match self.kind(grain) {
            Kind::Zero => out.fill(0),
            Kind::Random => {
                for chunk in out.chunks_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let b = state.to_le_bytes();
                    chunk.copy_from_slice(&b[..chunk.len()]);
                }
            }
            Kind::Text => {
                let mut i = 0;
                while i < out.len() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    for n in 0..16 {
                        let w = WORDS[((state >> (n * 4)) & 15) as usize];
                        let take = w.len().min(out.len() - i);
                        out[i..i + take].copy_from_slice(&w[..take]);
                        i += take;
                        if i >= out.len() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// A sparse disk image.
#[derive(Debug, Clone, Default)]
pub struct SparseDisk {
    size: u64,
    synthetic: Vec<Synthetic>,
    grains: BTreeMap<u64, Grain>,
}

impl SparseDisk {
    /// An all-zero disk.
    pub fn new(size: u64) -> Self {
        SparseDisk { size, synthetic: Vec::new(), grains: BTreeMap::new() }
    }

    /// A disk whose `regions` hold generated content.
    pub fn with_synthetic(size: u64, regions: Vec<Synthetic>) -> Self {
        SparseDisk { size, synthetic: regions, grains: BTreeMap::new() }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Grows the disk to `size` bytes (the new part reads as zeros).
    pub fn grow(&mut self, size: u64) {
        self.size = self.size.max(size);
    }

    /// Bytes held in memory for written grains.
    pub fn stored_bytes(&self) -> u64 {
        self.grains.values().filter(|g| matches!(g, Grain::Data(_))).count() as u64 * GRAIN
    }

    /// Bytes of non-zero grains (what a thin SR would report as physical utilisation).
    pub fn allocated_bytes(&self) -> u64 {
        let mut n = self.stored_bytes();
        for s in &self.synthetic {
            for g in s.start / GRAIN..s.end.div_ceil(GRAIN) {
                if !self.grains.contains_key(&g) && s.kind(g) != Kind::Zero {
                    n += GRAIN;
                }
            }
        }
        n
    }

    fn synthetic_for(&self, grain: u64) -> Option<&Synthetic> {
        self.synthetic.iter().find(|s| s.covers(grain))
    }

    /// Whether grain `g` may hold non-zero bytes.
    pub fn grain_nonzero(&self, g: u64) -> bool {
        match self.grains.get(&g) {
            Some(Grain::Zero) => false,
            Some(Grain::Data(_)) => true,
            None => self.synthetic_for(g).is_some_and(|s| s.kind(g) != Kind::Zero),
        }
    }

    /// Whether any byte in `[offset, offset+len)` may be non-zero.
    pub fn range_nonzero(&self, offset: u64, len: u64) -> bool {
        let end = (offset + len).min(self.size);
        if offset >= end {
            return false;
        }
        (offset / GRAIN..end.div_ceil(GRAIN)).any(|g| self.grain_nonzero(g))
    }

    fn read_grain(&self, g: u64, out: &mut [u8]) {
        match self.grains.get(&g) {
            Some(Grain::Zero) => out.fill(0),
            Some(Grain::Data(d)) => out.copy_from_slice(&d[..out.len()]),
            None => match self.synthetic_for(g) {
                Some(s) => {
                    if out.len() == GRAIN as usize {
                        s.fill(g, out);
                    } else {
                        let mut tmp = vec![0u8; GRAIN as usize];
                        s.fill(g, &mut tmp);
                        out.copy_from_slice(&tmp[..out.len()]);
                    }
                }
                None => out.fill(0),
            },
        }
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end read as zero.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        let mut grain_buf: Vec<u8> = Vec::new();
        while done < buf.len() {
            let pos = offset + done as u64;
            let g = pos / GRAIN;
            let in_grain = (pos % GRAIN) as usize;
            let take = (GRAIN as usize - in_grain).min(buf.len() - done);
            let out = &mut buf[done..done + take];
            if pos >= self.size {
                out.fill(0);
            } else if in_grain == 0 && take == GRAIN as usize {
                self.read_grain(g, out);
            } else {
                grain_buf.resize(GRAIN as usize, 0);
                self.read_grain(g, &mut grain_buf);
                out.copy_from_slice(&grain_buf[in_grain..in_grain + take]);
            }
            done += take;
        }
    }

    /// Writes `data` at `offset`; bytes past the end of the disk are an error.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), String> {
        if offset + data.len() as u64 > self.size {
            return Err(format!("write of {} bytes at {offset} beyond the disk size {}", data.len(), self.size));
        }
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let g = pos / GRAIN;
            let in_grain = (pos % GRAIN) as usize;
            let take = (GRAIN as usize - in_grain).min(data.len() - done);
            let piece = &data[done..done + take];
            let mut grain = vec![0u8; GRAIN as usize];
            if take != GRAIN as usize {
                self.read_grain(g, &mut grain);
            }
            grain[in_grain..in_grain + take].copy_from_slice(piece);
            if grain.iter().all(|&b| b == 0) {
                if self.synthetic_for(g).is_some() {
                    self.grains.insert(g, Grain::Zero);
                } else {
                    self.grains.remove(&g);
                }
            } else {
                self.grains.insert(g, Grain::Data(Arc::new(grain)));
            }
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_and_zeros_cost_nothing() {
        let mut d = SparseDisk::new(100 << 30);
        d.write(5, b"hello").unwrap();
        d.write((50 << 30) + 3, &[1; 200_000]).unwrap();
        let mut b = [0u8; 10];
        d.read(0, &mut b);
        assert_eq!(&b, b"\0\0\0\0\0hello");
        let mut big = vec![0u8; 200_010];
        d.read((50 << 30) - 7, &mut big);
        assert!(big[..10].iter().all(|&x| x == 0));
        assert!(big[10..200_010].iter().all(|&x| x == 1));
        assert!(d.stored_bytes() <= 6 * GRAIN);
        d.write(0, &[0; 10]).unwrap();
        assert!(!d.grain_nonzero(0));
        assert!(d.write(100 << 30, b"x").is_err());
    }

    #[test]
    fn synthetic_content_is_deterministic_mixed_and_overlayable() {
        let s = Synthetic { start: 0, end: 64 * GRAIN, seed: 7, zero_pct: 30, random_pct: 30 };
        let a = SparseDisk::with_synthetic(1 << 30, vec![s]);
        let b = SparseDisk::with_synthetic(1 << 30, vec![s]);
        let mut x = vec![0u8; (64 * GRAIN) as usize];
        let mut y = x.clone();
        a.read(0, &mut x);
        b.read(0, &mut y);
        assert!(x == y);
        let zero = (0..64).filter(|&g| !a.grain_nonzero(g)).count();
        assert!(zero > 5 && zero < 40, "{zero}");
        assert_eq!(a.stored_bytes(), 0);
        let mut c = a.clone();
        c.write(0, &vec![0u8; GRAIN as usize]).unwrap();
        assert!(!c.grain_nonzero(0));
        let mut first = vec![1u8; GRAIN as usize];
        c.read(0, &mut first);
        assert!(first.iter().all(|&v| v == 0));
    }
}
