//! A fast zstd frame encoder (RFC 8878) for the edge's streaming compression, written for speed in WebAssembly on
//! disk data rather than for ratio: a greedy single-probe hash matcher (zstd's "fast" strategy without repeat
//! offsets), literals Huffman-coded in four streams with a per-block table, and sequences coded with the three
//! predefined FSE distributions (no table to count, normalise or describe per block).
//!
//! ruzstd's encoder was the alternative; on text-like disk data it spent most of its time building and searching FSE
//! tables per block. Decoding stays ruzstd's (and the `zstd` CLI's, which the tests run on our output).

use super::zstd::{block_header, frame_header, raw_block, MAX_BLOCK};

/// Shortest match the matcher emits.
const MIN_MATCH: usize = 5;
/// Bits of the matcher's hash table.
const HASH_BITS: u32 = 15;
/// Longest Huffman code zstd allows.
const MAX_CODE_BITS: u32 = 11;
/// Below this many literals a Huffman table costs more than it saves.
const MIN_HUFFMAN: usize = 64;

/// The predefined (RFC 8878 §3.1.1.3.2.2) literal-length, match-length and offset-code distributions.
const LL_NORM: [i16; 36] =
    [4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1];
const ML_NORM: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
const OF_NORM: [i16; 29] = [1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1];

/// Literal-length codes 16..=35: (baseline, extra bits).
const LL_CODES: [(u32, u32); 20] = [
    (16, 1),
    (18, 1),
    (20, 1),
    (22, 1),
    (24, 2),
    (28, 2),
    (32, 3),
    (40, 3),
    (48, 4),
    (64, 6),
    (128, 7),
    (256, 8),
    (512, 9),
    (1024, 10),
    (2048, 11),
    (4096, 12),
    (8192, 13),
    (16384, 14),
    (32768, 15),
    (65536, 16),
];
/// Match-length codes 32..=52: (baseline, extra bits).
const ML_CODES: [(u32, u32); 21] = [
    (35, 1),
    (37, 1),
    (39, 1),
    (41, 1),
    (43, 2),
    (47, 2),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 5),
    (131, 7),
    (259, 8),
    (515, 9),
    (1027, 10),
    (2051, 11),
    (4099, 12),
    (8195, 13),
    (16387, 14),
    (32771, 15),
    (65539, 16),
];

/// Baselines and extra bits of all 36 literal-length and 53 match-length codes.
/// (Padded to 64 entries, so that a masked code indexes them without a bounds check.)
const LL_BASE: [(u32, u32); 64] = all_codes(16, 36, 0, &LL_CODES);
const ML_BASE: [(u32, u32); 64] = all_codes(32, 53, 3, &ML_CODES);
/// Code of each literal length below 64 and of each match length below 131 (less 3): table lookups on the hot path.
const LL_CODE: [u8; 64] = code_table(&LL_BASE, 36, 0);
const ML_CODE: [u8; 128] = code_table(&ML_BASE, 53, 3);

const fn all_codes<const N: usize>(direct: usize, codes: usize, offset: u32, coded: &[(u32, u32)]) -> [(u32, u32); N] {
    let mut t = [(u32::MAX, 0); N];
    let mut i = 0;
    while i < codes {
        t[i] = if i < direct { (i as u32 + offset, 0) } else { coded[i - direct] };
        i += 1;
    }
    t
}

const fn code_table<const N: usize>(base: &[(u32, u32); 64], codes: usize, offset: u32) -> [u8; N] {
    let mut t = [0u8; N];
    let (mut v, mut code) = (0, 0);
    while v < N {
        while code + 1 < codes && base[code + 1].0 <= v as u32 + offset {
            code += 1;
        }
        t[v] = code as u8;
        v += 1;
    }
    t
}

/// The code of a literal length (its extra bits: the length less `LL_BASE[code].0`, in `LL_BASE[code].1` bits).
#[inline(always)]
fn literal_length(ll: u32) -> u8 {
    if ll < 64 {
        LL_CODE[ll as usize]
    } else {
        (31 - ll.leading_zeros() + 19) as u8
    }
}

/// The code of a match length (at least 3; extra bits as for literal lengths, with `ML_BASE`).
#[inline(always)]
fn match_length(ml: u32) -> u8 {
    let m = ml - 3;
    if m < 128 {
        ML_CODE[m as usize]
    } else {
        (31 - m.leading_zeros() + 36) as u8
    }
}

/// The code of an offset value: its bit length less one, which is also the count of extra bits.
#[inline(always)]
fn offset(offset_value: u32) -> u8 {
    (31 - offset_value.leading_zeros()) as u8
}

/// A little-endian bit writer as zstd's backward streams need it (the decoder reads from the end). `add` only
/// gathers bits; `flush` stores all eight bytes of the accumulator and advances by the whole ones, so callers
/// flush before more than 56 bits are pending and the hot loops have no branch per field.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> Bits<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        let pos = out.len();
        Bits { out, pos, acc: 0, n: 0 }
    }

    /// Gathers the low `bits` bits of `value`, which has no higher bit set.
    #[inline(always)]
    fn add(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.n;
        self.n += bits;
    }

    #[inline(always)]
    fn flush(&mut self) {
        // An array assignment, not copy_from_slice: in WebAssembly small copies can become calls to the host.
        match self.out.get_mut(self.pos..self.pos + 8) {
            Some(dst) => {
                if let Ok(dst) = <&mut [u8; 8]>::try_from(dst) {
                    *dst = self.acc.to_le_bytes();
                }
            }
            None => {
                self.out.resize(self.pos + 8 + 4096, 0);
                self.out[self.pos..self.pos + 8].copy_from_slice(&self.acc.to_le_bytes());
            }
        }
        let bytes = self.n >> 3;
        self.pos += bytes as usize;
        self.acc = (self.acc >> (bytes * 4)) >> (bytes * 4);
        self.n &= 7;
    }

    /// Ends the stream with the 1 bit the decoder looks for, padded to a byte.
    fn close(mut self) {
        self.add(1, 1);
        self.flush();
        let end = self.pos + usize::from(self.n > 0);
        self.out.truncate(end);
    }
}

/// An FSE encoding table built from a normalised distribution (zstd's `FSE_buildCTable` layout).
struct Fse {
    log: u32,
    /// Fixed sizes (the largest table, the largest alphabet) and masked indexes let the hot loop go without bounds
    /// checks, which WebAssembly pays for dearly.
    next: Box<[u16; 512]>,
    /// Per symbol: (delta of bits out, delta to find the next state).
    symbols: [(u32, i32); 64],
    alphabet: usize,
}

impl Fse {
    fn new(norm: &[i16], log: u32) -> Fse {
        let size = 1usize << log;
        let mask = size - 1;
        let step = (size >> 1) + (size >> 3) + 3;
        let mut spread = vec![0u8; size];
        let mut high = size - 1;
        let mut cumul = vec![0usize; norm.len() + 1];
        for (s, &c) in norm.iter().enumerate() {
            if c == -1 {
                cumul[s + 1] = cumul[s] + 1;
                spread[high] = s as u8;
                high = high.saturating_sub(1);
            } else {
                cumul[s + 1] = cumul[s] + c.max(0) as usize;
            }
        }
        let mut pos = 0;
        for (s, &c) in norm.iter().enumerate() {
            for _ in 0..c.max(0) {
                spread[pos] = s as u8;
                pos = (pos + step) & mask;
                while pos > high {
                    pos = (pos + step) & mask;
                }
            }
        }
        let mut next = Box::new([0u16; 512]);
        for (u, &s) in spread.iter().enumerate() {
            let s = usize::from(s);
            next[cumul[s]] = (size + u) as u16;
            cumul[s] += 1;
        }
        let mut total = 0i32;
        let mut symbols = [(0, 0); 64];
        for (slot, &c) in symbols.iter_mut().zip(norm) {
            *slot = match c {
                0 => (0, 0),
                -1 | 1 => {
                    total += 1;
                    ((log << 16).wrapping_sub(size as u32), total - 2)
                }
                c => {
                    let c = i32::from(c);
                    let bits_out = log - (31 - ((c - 1) as u32).leading_zeros());
                    let min_state_plus = (c as u32) << bits_out;
                    total += c;
                    ((bits_out << 16).wrapping_sub(min_state_plus), total - 2 * c)
                }
            };
        }
        Fse { log, next, symbols, alphabet: norm.len() }
    }

    fn start(&self, symbol: u8) -> u32 {
        let (delta_bits, delta_state) = self.symbols[usize::from(symbol) & 63];
        let bits = (delta_bits.wrapping_add(1 << 15)) >> 16;
        let value = (bits << 16).wrapping_sub(delta_bits);
        u32::from(self.next[((value >> bits) as i32 + delta_state) as usize & 511])
    }

    /// Moves `state` on by `symbol`, returning the bits to emit and their count.
    #[inline(always)]
    fn encode(&self, state: &mut u32, symbol: u8) -> (u64, u32) {
        let (delta_bits, delta_state) = self.symbols[usize::from(symbol) & 63];
        let n = state.wrapping_add(delta_bits) >> 16;
        let out = u64::from(*state & ((1 << n) - 1));
        *state = u32::from(self.next[((*state >> n) as i32 + delta_state) as usize & 511]);
        (out, n)
    }

    fn flush(&self, state: u32, bits: &mut Bits<'_>) {
        bits.add(u64::from(state & ((1 << self.log) - 1)), self.log);
        bits.flush();
    }
}

/// One sequence: literals before a match, the match's length and its offset value (offset + 3: no repeat codes).
#[derive(Clone, Copy)]
struct Sequence {
    literals: u32,
    length: u32,
    offset_value: u32,
    /// The literal-length, match-length and offset codes.
    codes: [u8; 3],
}

/// Compresses frames; keeps its tables and buffers between frames.
pub struct Encoder {
    /// Positions by hash of their next 5 bytes, counted from the start of all frames so far (wrapping), so a new
    /// frame needs no reset: see `base`.
    hash: Box<[u32; 1 << HASH_BITS]>,
    /// Where the current frame starts in that count.
    base: u32,
    literals: Vec<u8>,
    literal_count: usize,
    sequences: Vec<Sequence>,
    /// How often each literal-length, match-length and offset code occurs in the block's sequences.
    ll_hist: [u32; 64],
    ml_hist: [u32; 64],
    of_hist: [u32; 32],
    block: Vec<u8>,
    ll: Fse,
    ml: Fse,
    of: Fse,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            hash: Box::new([0; 1 << HASH_BITS]),
            base: 0,
            literals: Vec::new(),
            literal_count: 0,
            sequences: Vec::new(),
            ll_hist: [0; 64],
            ml_hist: [0; 64],
            of_hist: [0; 32],
            block: Vec::new(),
            ll: Fse::new(&LL_NORM, 6),
            ml: Fse::new(&ML_NORM, 6),
            of: Fse::new(&OF_NORM, 5),
        }
    }
}

#[inline(always)]
fn read64(d: &[u8], at: usize) -> u64 {
    let w = &d[at..at + 8];
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

impl Encoder {
    /// Appends `data` (at most 4 GiB) as one zstd frame: matches reach back anywhere in `data`, so callers bound the
    /// memory a decoder needs by the size of what they pass.
    pub fn frame(&mut self, data: &[u8], out: &mut Vec<u8>) {
        frame_header(data.len(), out);
        let mut start = 0;
        loop {
            let end = (start + MAX_BLOCK).min(data.len());
            let last = end == data.len();
            self.block(data, start, end, last, out);
            if last {
                break;
            }
            start = end;
        }
        self.base = self.base.wrapping_add(data.len() as u32);
    }

    fn block(&mut self, data: &[u8], start: usize, end: usize, last: bool, out: &mut Vec<u8>) {
        self.find_sequences(data, start, end);
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        self.write_literals(&mut block);
        self.write_sequences(&mut block);
        if block.len() < end - start {
            block_header(last, 2, block.len(), out);
            out.extend_from_slice(&block);
        } else {
            raw_block(last, &data[start..end], out);
        }
        self.block = block;
    }

    /// Greedy matching of `data[start..end]`, matches reaching back to the frame's start. (This and
    /// `write_sequences` stay out of line: inlined, they ran about 15 % slower under wasmtime's Cranelift.)
    #[inline(never)]
    fn find_sequences(&mut self, d: &[u8], start: usize, end: usize) {
        self.sequences.clear();
        self.ll_hist = [0; 64];
        self.ml_hist = [0; 64];
        self.of_hist = [0; 32];
        // Literals are copied 16 bytes at a time (most runs are short) into a buffer with that much slack.
        if self.literals.len() < end - start + 16 {
            self.literals.resize(end - start + 16, 0);
        }
        let mut copied = 0;
        let mut anchor = start;
        let mut i = start;
        while i + 8 <= end {
            let v = read64(d, i);
            let key = ((v << 24).wrapping_mul(0xCF1B_BCDC_B7A5_6463) >> (64 - HASH_BITS)) as usize;
            // Entries of earlier frames (or of nothing) fall outside 0..i; any in range is checked byte by byte.
            let c = self.hash[key].wrapping_sub(self.base) as usize;
            self.hash[key] = self.base.wrapping_add(i as u32);
            if c < i && (read64(d, c) ^ v) & 0xFF_FFFF_FFFF == 0 {
                let mut len = MIN_MATCH;
                while i + len + 8 <= end {
                    let x = read64(d, i + len) ^ read64(d, c + len);
                    if x != 0 {
                        len += (x.trailing_zeros() / 8) as usize;
                        break;
                    }
                    len += 8;
                }
                if i + len + 8 > end {
                    while i + len < end && d[c + len] == d[i + len] {
                        len += 1;
                    }
                }
                let run = i - anchor;
                if run <= 16 && anchor + 16 <= d.len() {
                    let src = <[u8; 16]>::try_from(&d[anchor..anchor + 16]);
                    if let (Ok(dst), Ok(src)) =
                        (<&mut [u8; 16]>::try_from(&mut self.literals[copied..copied + 16]), src)
                    {
                        *dst = src;
                    }
                } else {
                    self.literals[copied..copied + run].copy_from_slice(&d[anchor..i]);
                }
                copied += run;
                let (literals, length, offset_value) = (run as u32, len as u32, (i - c + 3) as u32);
                let codes = [literal_length(literals), match_length(length), offset(offset_value)];
                self.ll_hist[usize::from(codes[0]) & 63] += 1;
                self.ml_hist[usize::from(codes[1]) & 63] += 1;
                self.of_hist[usize::from(codes[2]) & 31] += 1;
                self.sequences.push(Sequence { literals, length, offset_value, codes });
                i += len;
                anchor = i;
                continue;
            }
            i += ((i - anchor) >> 8) + 1;
        }
        self.literals[copied..copied + end - anchor].copy_from_slice(&d[anchor..end]);
        self.literal_count = copied + end - anchor;
    }

    fn write_literals(&self, out: &mut Vec<u8>) {
        let lits = &self.literals[..self.literal_count];
        let mut hist = [0u32; 256];
        for &b in lits {
            hist[usize::from(b)] += 1;
        }
        let distinct = hist.iter().filter(|&&c| c > 0).count();
        if distinct == 1 {
            literals_header(1, lits.len(), out);
            out.push(lits[0]);
            return;
        }
        if lits.len() >= MIN_HUFFMAN {
            let at = out.len();
            if huffman_literals(lits, &hist, out) {
                return;
            }
            out.truncate(at);
        }
        literals_header(0, lits.len(), out);
        out.extend_from_slice(lits);
    }

    #[inline(never)]
    fn write_sequences(&mut self, out: &mut Vec<u8>) {
        let n = self.sequences.len();
        match n {
            0..=127 => out.push(n as u8),
            128..=0x7EFF => out.extend_from_slice(&[(n >> 8) as u8 | 0x80, n as u8]),
            _ => {
                out.push(255);
                out.extend_from_slice(&((n - 0x7F00) as u16).to_le_bytes());
            }
        }
        if n == 0 {
            return;
        }
        let modes_at = out.len();
        out.push(0);
        // Tables described in the order LL, OF, ML; the modes byte holds LL, OF, ML from the top.
        let ll = choose_table(&self.ll_hist, n, 9, &self.ll, out);
        let of = choose_table(&self.of_hist, n, 8, &self.of, out);
        let ml = choose_table(&self.ml_hist, n, 9, &self.ml, out);
        out[modes_at] = (ll.1 << 6) | (of.1 << 4) | (ml.1 << 2);
        let ll_t = ll.0.as_ref().unwrap_or(&self.ll);
        let of_t = of.0.as_ref().unwrap_or(&self.of);
        let ml_t = ml.0.as_ref().unwrap_or(&self.ml);
        // The extra bits of a sequence: literal length and match length (≤ 32 together), then the offset's.
        let extras = |s: &Sequence| {
            let c = &s.codes;
            let (ll_base, ll_bits) = LL_BASE[usize::from(c[0]) & 63];
            let (ml_base, ml_bits) = ML_BASE[usize::from(c[1]) & 63];
            let lengths = u64::from(s.literals - ll_base) | u64::from(s.length - ml_base) << ll_bits;
            let of_bits = u32::from(c[2]);
            (lengths, ll_bits + ml_bits, u64::from(s.offset_value - (1 << of_bits)), of_bits)
        };
        let mut bits = Bits::new(out);
        let last = &self.sequences[n - 1];
        let c = &last.codes;
        let mut ml_state = ml_t.start(c[1]);
        let mut of_state = of_t.start(c[2]);
        let mut ll_state = ll_t.start(c[0]);
        let (lengths, length_bits, off, off_bits) = extras(last);
        bits.add(lengths, length_bits);
        bits.flush();
        bits.add(off, off_bits);
        bits.flush();
        for s in self.sequences[..n - 1].iter().rev() {
            let c = &s.codes;
            let (of_v, of_n) = of_t.encode(&mut of_state, c[2]);
            let (ml_v, ml_n) = ml_t.encode(&mut ml_state, c[1]);
            let (ll_v, ll_n) = ll_t.encode(&mut ll_state, c[0]);
            bits.add(of_v | ml_v << of_n | ll_v << (of_n + ml_n), of_n + ml_n + ll_n);
            let (lengths, length_bits, off, off_bits) = extras(s);
            bits.add(lengths, length_bits);
            // One flush per sequence when all fits (nearly always), else two.
            if bits.n + off_bits > 63 {
                bits.flush();
            }
            bits.add(off, off_bits);
            bits.flush();
        }
        ml_t.flush(ml_state, &mut bits);
        of_t.flush(of_state, &mut bits);
        ll_t.flush(ll_state, &mut bits);
        bits.close();
    }
}

/// Fewer sequences than this use the predefined tables: a described table would cost more than it saves.
const MIN_DESCRIBED: usize = 64;

/// The table for one of the three sequence codes: the predefined one (mode 0) for few sequences, else one fitted to
/// this block's codes (mode 2), whose description is appended to `out`.
fn choose_table(hist: &[u32], n: usize, max_log: u32, predefined: &Fse, out: &mut Vec<u8>) -> (Option<Fse>, u8) {
    let fits_predefined = hist.iter().skip(predefined.alphabet).all(|&c| c == 0);
    if n < MIN_DESCRIBED && fits_predefined {
        return (None, 0);
    }
    let last = hist.iter().rposition(|&c| c > 0).unwrap_or(0);
    let distinct = hist.iter().filter(|&&c| c > 0).count();
    let log = table_log(n, distinct, max_log);
    let norm = normalize(&hist[..=last], n as u32, log);
    write_ncount(&norm, log, out);
    (Some(Fse::new(&norm, log)), 2)
}

/// The accuracy log for `n` symbols of `distinct` kinds, as zstd picks it: about a quarter of n's bit length's
/// worth of states, enough for every kind, between 5 and `max_log`.
fn table_log(n: usize, distinct: usize, max_log: u32) -> u32 {
    let from_size = (usize::BITS - n.saturating_sub(1).leading_zeros()).saturating_sub(2);
    let needed = usize::BITS - distinct.leading_zeros() + 1;
    from_size.max(needed).clamp(5, max_log)
}

/// Counts scaled to sum to exactly `1 << log`, every present symbol at least 1 (no "less than one" entries).
fn normalize(counts: &[u32], total: u32, log: u32) -> Vec<i16> {
    let size = 1i32 << log;
    let total = u64::from(total.max(1));
    let mut norm: Vec<i16> = counts
        .iter()
        .map(|&c| if c == 0 { 0 } else { ((u64::from(c) * size as u64 + total / 2) / total).max(1) as i16 })
        .collect();
    let mut sum: i32 = norm.iter().map(|&x| i32::from(x)).sum();
    while sum != size {
        // The largest entry absorbs the rounding, one state at a time; it stays above 1 while sum > size.
        let Some(i) = (0..norm.len()).max_by_key(|&i| norm[i]) else { break };
        if sum > size {
            norm[i] -= 1;
            sum -= 1;
        } else {
            norm[i] += 1;
            sum += 1;
        }
    }
    norm
}

/// Appends an FSE table description (RFC 8878 §4.1.1) of `norm` (no negative entries) at accuracy `log`.
fn write_ncount(norm: &[i16], log: u32, out: &mut Vec<u8>) {
    let size = 1i32 << log;
    let mut stream: u32 = log - 5;
    let mut count_bits = 4u32;
    let mut remaining = size + 1;
    let mut threshold = size;
    let mut nb_bits = log + 1;
    let mut symbol = 0;
    let mut previous_zero = false;
    let flush = |stream: &mut u32, count_bits: &mut u32, out: &mut Vec<u8>| {
        if *count_bits > 16 {
            out.extend_from_slice(&(*stream as u16).to_le_bytes());
            *stream >>= 16;
            *count_bits -= 16;
        }
    };
    while symbol < norm.len() && remaining > 1 {
        if previous_zero {
            let mut start = symbol;
            while symbol < norm.len() && norm[symbol] == 0 {
                symbol += 1;
            }
            if symbol == norm.len() {
                break;
            }
            while symbol >= start + 24 {
                start += 24;
                stream += 0xFFFF << count_bits;
                out.extend_from_slice(&(stream as u16).to_le_bytes());
                stream >>= 16;
            }
            while symbol >= start + 3 {
                start += 3;
                stream += 3 << count_bits;
                count_bits += 2;
            }
            stream += ((symbol - start) as u32) << count_bits;
            count_bits += 2;
            flush(&mut stream, &mut count_bits, out);
        }
        let mut count = i32::from(norm[symbol]);
        symbol += 1;
        let max = (2 * threshold - 1) - remaining;
        remaining -= count.abs();
        count += 1;
        if count >= threshold {
            count += max;
        }
        stream += (count as u32) << count_bits;
        count_bits += nb_bits;
        count_bits -= u32::from(count < max);
        previous_zero = count == 1;
        while remaining < threshold {
            nb_bits -= 1;
            threshold >>= 1;
        }
        flush(&mut stream, &mut count_bits, out);
    }
    let bytes = count_bits.div_ceil(8);
    out.extend_from_slice(&stream.to_le_bytes()[..bytes as usize]);
}

/// A raw (0) or RLE (1) literals section header for `size` literals.
fn literals_header(kind: u8, size: usize, out: &mut Vec<u8>) {
    let s = size as u32;
    match size {
        0..=31 => out.push(kind | (s << 3) as u8),
        32..=4095 => out.extend_from_slice(&(u16::from(kind) | 0b0100 | (s << 4) as u16).to_le_bytes()),
        _ => out.extend_from_slice(&(u32::from(kind) | 0b1100 | (s << 4)).to_le_bytes()[..3]),
    }
}

/// Appends a Huffman-coded literals section (four streams); false when a table cannot be described in the direct
/// form (a literal above 128) or would not pay.
fn huffman_literals(lits: &[u8], hist: &[u32; 256], out: &mut Vec<u8>) -> bool {
    let Some(max_symbol) = hist.iter().rposition(|&c| c > 0) else { return false };
    if max_symbol > 128 {
        return false;
    }
    let lengths = code_lengths(hist);
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    // Canonical codes: longest first, symbols in order within a length.
    let mut codes = [0u32; 256];
    let mut next = 0u32;
    for len in (1..=max_len).rev() {
        for (s, &l) in lengths.iter().enumerate() {
            if l == len {
                codes[s] = next;
                next += 1;
            }
        }
        next >>= 1;
    }
    let mut body = Vec::with_capacity(lits.len());
    // Table description: direct 4-bit weights for symbols 0..max_symbol (the last one's is implied).
    body.push(127 + max_symbol as u8);
    let weight = |s: usize| if lengths[s] == 0 { 0 } else { max_len + 1 - lengths[s] };
    for pair in (0..max_symbol).collect::<Vec<_>>().chunks(2) {
        let hi = weight(pair[0]);
        let lo = pair.get(1).map_or(0, |&s| weight(s));
        body.push(hi << 4 | lo);
    }
    let jump = body.len();
    body.extend_from_slice(&[0; 6]);
    let segment = lits.len().div_ceil(4);
    let mut sizes = [0usize; 3];
    for (k, part) in lits.chunks(segment).enumerate() {
        let before = body.len();
        let mut bits = Bits::new(&mut body);
        // Backwards, four codes (≤ 44 bits) per flush.
        let tail = part.len() % 4;
        for &b in part[part.len() - tail..].iter().rev() {
            bits.add(u64::from(codes[usize::from(b)]), u32::from(lengths[usize::from(b)]));
        }
        bits.flush();
        for quad in part[..part.len() - tail].rchunks_exact(4) {
            for &b in quad.iter().rev() {
                bits.add(u64::from(codes[usize::from(b)]), u32::from(lengths[usize::from(b)]));
            }
            bits.flush();
        }
        bits.close();
        if k < 3 {
            sizes[k] = body.len() - before;
        }
    }
    for (k, &size) in sizes.iter().enumerate() {
        let Ok(size) = u16::try_from(size) else { return false };
        body[jump + 2 * k..jump + 2 * k + 2].copy_from_slice(&size.to_le_bytes());
    }
    let (regen, comp) = (lits.len() as u64, body.len() as u64);
    if comp + 5 >= regen {
        return false;
    }
    match regen.max(comp) {
        0..=1023 => out.extend_from_slice(&(2 | 1 << 2 | regen << 4 | comp << 14).to_le_bytes()[..3]),
        1024..=16383 => out.extend_from_slice(&(2 | 2 << 2 | regen << 4 | comp << 18).to_le_bytes()[..4]),
        _ => out.extend_from_slice(&(2 | 3 << 2 | regen << 4 | comp << 22).to_le_bytes()[..5]),
    }
    out.extend_from_slice(&body);
    true
}

/// Huffman code lengths (at most [`MAX_CODE_BITS`]) for the symbols present in `hist`; at least two are.
fn code_lengths(hist: &[u32; 256]) -> [u8; 256] {
    let mut leaves: Vec<(u32, u8)> =
        hist.iter().enumerate().filter(|&(_, &c)| c > 0).map(|(s, &c)| (c, s as u8)).collect();
    leaves.sort_unstable();
    let n = leaves.len();
    let mut lengths = [0u8; 256];
    // Two-queue Huffman: leaves in count order, internal nodes appended in the order they are made.
    let mut weight: Vec<u64> = leaves.iter().map(|&(c, _)| u64::from(c)).collect();
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut inner) = (0, n);
    for node in n..2 * n - 1 {
        let mut pick = || {
            if leaf < n && (inner >= node || weight[leaf] <= weight[inner]) {
                leaf += 1;
                leaf - 1
            } else {
                inner += 1;
                inner - 1
            }
        };
        let (a, b) = (pick(), pick());
        weight.push(weight[a] + weight[b]);
        parent[a] = node;
        parent[b] = node;
    }
    let mut depth = vec![0u32; 2 * n - 1];
    for k in (0..2 * n - 2).rev() {
        depth[k] = depth[parent[k]] + 1;
    }
    // Count codes per length, folding longer ones into the limit and repairing the Kraft sum (as deflate
    // encoders do), then hand the shortest lengths to the most frequent symbols.
    let max = MAX_CODE_BITS as usize;
    let mut per_len = [0u32; 32];
    for &d in &depth[..n] {
        per_len[(d as usize).min(max)] += 1;
    }
    let mut kraft: u32 = (1..=max).map(|l| per_len[l] << (max - l)).sum();
    while kraft > 1 << max {
        per_len[max] -= 1;
        if let Some(l) = (1..max).rev().find(|&l| per_len[l] > 0) {
            per_len[l] -= 1;
            per_len[l + 1] += 2;
        }
        kraft -= 1;
    }
    let mut symbols = leaves.iter().rev();
    for (len, &count) in per_len.iter().enumerate().take(max + 1).skip(1) {
        for _ in 0..count {
            if let Some(&(_, s)) = symbols.next() {
                lengths[usize::from(s)] = len as u8;
            }
        }
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut d = ruzstd::decoding::StreamingDecoder::new(z).unwrap();
        d.read_to_end(&mut out).unwrap();
        out
    }

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let words: [&[u8]; 8] = [b"the ", b"disk ", b"block ", b"of ", b"virtual ", b"machine ", b"sector ", b"xen\n"];
        let mut x = seed | 1;
        let mut d = Vec::with_capacity(n + 16);
        while d.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.extend_from_slice(words[(x & 7) as usize]);
        }
        d.truncate(n);
        d
    }

    #[test]
    fn frames_round_trip_through_ruzstd() {
        let mut enc = Encoder::default();
        let mut binary: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8 ^ (i >> 9) as u8).collect();
        binary.extend(text(5000, 3));
        let cases: Vec<Vec<u8>> = vec![
            text(1 << 20, 1),
            text(200_000, 2),
            binary,
            b"a".repeat(1000),
            b"ab".to_vec(),
            Vec::new(),
            (0..=255u8).cycle().take(70_000).collect(),
        ];
        for data in cases {
            let mut z = Vec::new();
            enc.frame(&data, &mut z);
            assert!(decode(&z) == data, "{} bytes", data.len());
        }
        let mut z = Vec::new();
        enc.frame(&text(1 << 20, 9), &mut z);
        assert!(z.len() < (1 << 20) / 4, "text compresses: {}", z.len());
    }

    #[test]
    fn length_codes_match_the_rfc_tables() {
        assert_eq!(literal_length(15), 15);
        assert_eq!((literal_length(17), LL_BASE[16]), (16, (16, 1)));
        assert_eq!((literal_length(100_000), LL_BASE[35]), (35, (65536, 16)));
        assert_eq!((match_length(3), ML_BASE[0]), (0, (3, 0)));
        assert_eq!((match_length(131_072), ML_BASE[52]), (52, (65539, 16)));
        assert_eq!(offset(4), 2);
        // Every length lands in its code's range, across the table/formula switch.
        for ll in 0..131_072 {
            let (base, bits) = LL_BASE[usize::from(literal_length(ll))];
            assert!(base <= ll && ll - base < 1 << bits, "ll {ll}");
        }
        for ml in 3..131_075 {
            let (base, bits) = ML_BASE[usize::from(match_length(ml))];
            assert!(base <= ml && ml - base < 1 << bits, "ml {ml}");
        }
    }

    #[test]
    fn huffman_lengths_are_limited_and_complete() {
        let mut hist = [0u32; 256];
        let mut f = 1u32;
        for h in hist.iter_mut().take(40) {
            *h = f;
            f = f.saturating_mul(2).min(1 << 30);
        }
        let l = code_lengths(&hist);
        assert!(l.iter().all(|&x| u32::from(x) <= MAX_CODE_BITS));
        let kraft: u32 = l.iter().filter(|&&x| x > 0).map(|&x| 1 << (MAX_CODE_BITS - u32::from(x))).sum();
        assert_eq!(kraft, 1 << MAX_CODE_BITS);
    }
}
