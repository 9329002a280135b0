//! Packed bit vectors over `u64` words: the lingua franca of all stages.
//!
//! Bit order (ARCHITECTURE.md §5): bit `i` is bit `i mod 64` of word `i / 64` (LSB first); on
//! disk, words are little-endian, so bit `i` is bit `i mod 8` of byte `i / 8`.
//! Invariant: bits at positions `>= len` in the last word are zero.
//! A [`BitVec`] may hold key material, so its words are zeroized on drop.

use crate::kernels::Kernels;
use zeroize::Zeroize;

/// Number of `u64` words needed for `bits` bits.
#[inline]
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// A growable packed bit vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BitVec {
    words: Vec<u64>,
    len: usize,
}

impl std::fmt::Debug for BitVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print contents: a BitVec may be key material.
        write!(f, "BitVec {{ len: {} }}", self.len)
    }
}

impl Drop for BitVec {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

impl BitVec {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty vector with room for `bits` bits.
    pub fn with_capacity(bits: usize) -> Self {
        BitVec {
            words: Vec::with_capacity(words_for(bits) + 1),
            len: 0,
        }
    }

    /// `len` zero bits.
    pub fn zeros(len: usize) -> Self {
        BitVec {
            words: vec![0; words_for(len)],
            len,
        }
    }

    /// `len` one bits.
    pub fn ones(len: usize) -> Self {
        let mut v = BitVec {
            words: vec![u64::MAX; words_for(len)],
            len,
        };
        v.clear_tail();
        v
    }

    /// From words and a bit length (extra words are dropped, tail bits cleared).
    pub fn from_words(mut words: Vec<u64>, len: usize) -> Self {
        assert!(
            words.len() * 64 >= len,
            "from_words: {} words cannot hold {len} bits",
            words.len()
        );
        words.truncate(words_for(len));
        let mut v = BitVec { words, len };
        v.clear_tail();
        v
    }

    /// From little-endian bytes holding `len` bits (bit i = bit i%8 of byte i/8).
    pub fn from_bytes_le(bytes: &[u8], len: usize) -> Self {
        assert!(
            bytes.len() * 8 >= len,
            "from_bytes_le: {} bytes cannot hold {len} bits",
            bytes.len()
        );
        let mut words = vec![0u64; words_for(len)];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Self::from_words(words, len)
    }

    /// From booleans (tests and small inputs).
    pub fn from_bools(bits: &[bool]) -> Self {
        let mut v = BitVec::zeros(bits.len());
        for (i, &b) in bits.iter().enumerate() {
            if b {
                v.set(i, true);
            }
        }
        v
    }

    /// Little-endian bytes, `ceil(len/8)` of them.
    pub fn to_bytes_le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.truncate(self.len.div_ceil(8));
        out
    }

    /// Bits as booleans (tests).
    pub fn to_bools(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// Number of bits.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words (tail bits zero).
    #[inline]
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Mutable words. Callers must keep the tail bits zero (or call [`BitVec::clear_tail`]).
    #[inline]
    pub fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    /// Bit `i`.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        (self.words[i / 64] >> (i % 64)) & 1 == 1
    }

    /// Set bit `i` to `v`.
    #[inline]
    pub fn set(&mut self, i: usize, v: bool) {
        debug_assert!(i < self.len);
        let m = 1u64 << (i % 64);
        if v {
            self.words[i / 64] |= m;
        } else {
            self.words[i / 64] &= !m;
        }
    }

    /// Flip bit `i`.
    #[inline]
    pub fn flip(&mut self, i: usize) {
        debug_assert!(i < self.len);
        self.words[i / 64] ^= 1u64 << (i % 64);
    }

    /// Append one bit.
    #[inline]
    pub fn push(&mut self, v: bool) {
        if self.len.is_multiple_of(64) {
            self.words.push(0);
        }
        if v {
            self.words[self.len / 64] |= 1u64 << (self.len % 64);
        }
        self.len += 1;
    }

    /// Zero the bits beyond `len` in the last word.
    pub fn clear_tail(&mut self) {
        let r = self.len % 64;
        if r != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << r) - 1;
        }
    }

    /// Shorten to `len` bits.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            let keep = words_for(len);
            self.words[keep..].zeroize();
            self.words.truncate(keep);
            self.clear_tail();
        }
    }

    /// Append the bits of `src` (same bit layout) selected by `mask`, using the compaction
    /// kernel (`pext` where available). `src` and `mask` are word slices of equal length; mask
    /// bits beyond the meaningful length must be zero.
    pub fn extend_compacted(&mut self, kernels: &Kernels, src: &[u64], mask: &[u64]) {
        let add = kernels.popcount(mask) as usize;
        self.words.resize(words_for(self.len + add) + 1, 0);
        let end = kernels.compact(src, mask, &mut self.words, self.len);
        debug_assert_eq!(end, self.len + add);
        self.len = end;
        self.words.truncate(words_for(self.len));
    }

    /// A new vector holding the bits of `self` where `mask` is set.
    pub fn compacted(&self, kernels: &Kernels, mask: &BitVec) -> BitVec {
        assert_eq!(self.len, mask.len, "compacted: mask length differs");
        let mut out = BitVec::with_capacity(self.len);
        out.extend_compacted(kernels, &self.words, &mask.words);
        out
    }

    /// Append all bits of `other`.
    pub fn extend_from(&mut self, other: &BitVec) {
        self.extend_from_range(other, 0, other.len);
    }

    /// Append bits `[start, end)` of `other`.
    pub fn extend_from_range(&mut self, other: &BitVec, start: usize, end: usize) {
        assert!(
            start <= end && end <= other.len,
            "extend_from_range: bad range"
        );
        let n = end - start;
        if n == 0 {
            return;
        }
        let new_len = self.len + n;
        self.words.resize(words_for(new_len), 0);
        let mut pos = self.len;
        let mut i = start;
        while i < end {
            // Take up to 64 bits starting at i, but not past a destination word boundary.
            let take = (64 - pos % 64).min(end - i).min(64);
            let bits = other.get_bits(i, take);
            self.words[pos / 64] |= bits << (pos % 64);
            pos += take;
            i += take;
        }
        self.len = new_len;
    }

    /// `count` (≤ 64) bits starting at bit `start`, as the low bits of a word.
    #[inline]
    pub fn get_bits(&self, start: usize, count: usize) -> u64 {
        debug_assert!(count <= 64 && start + count <= self.len);
        if count == 0 {
            return 0;
        }
        let w = start / 64;
        let o = start % 64;
        let mut v = self.words[w] >> o;
        if o != 0 && o + count > 64 {
            v |= self.words[w + 1] << (64 - o);
        }
        if count < 64 {
            v & ((1u64 << count) - 1)
        } else {
            v
        }
    }

    /// Bits `[start, end)` as a new vector.
    pub fn slice(&self, start: usize, end: usize) -> BitVec {
        let mut out = BitVec::with_capacity(end - start);
        out.extend_from_range(self, start, end);
        out
    }

    /// Number of set bits.
    pub fn count_ones(&self, kernels: &Kernels) -> u64 {
        kernels.popcount(&self.words)
    }

    /// Parity (XOR) of bits `[start, end)`.
    pub fn parity_range(&self, start: usize, end: usize) -> bool {
        debug_assert!(start <= end && end <= self.len);
        if start == end {
            return false;
        }
        let (ws, we) = (start / 64, (end - 1) / 64);
        let lo_mask = u64::MAX << (start % 64);
        let hi_mask = if end.is_multiple_of(64) {
            u64::MAX
        } else {
            (1u64 << (end % 64)) - 1
        };
        if ws == we {
            return (self.words[ws] & lo_mask & hi_mask).count_ones() & 1 == 1;
        }
        let mut acc = (self.words[ws] & lo_mask) ^ (self.words[we] & hi_mask);
        for w in &self.words[ws + 1..we] {
            acc ^= w;
        }
        acc.count_ones() & 1 == 1
    }

    /// Number of positions where `self` and `other` differ (equal lengths).
    pub fn hamming_distance(&self, kernels: &Kernels, other: &BitVec) -> u64 {
        assert_eq!(self.len, other.len, "hamming_distance: length mismatch");
        kernels.xor_popcount(&self.words, &other.words)
    }

    /// `self ^= other` (equal lengths).
    pub fn xor_assign(&mut self, other: &BitVec) {
        assert_eq!(self.len, other.len, "xor_assign: length mismatch");
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a ^= b;
        }
    }

    /// `self &= other` (equal lengths).
    pub fn and_assign(&mut self, other: &BitVec) {
        assert_eq!(self.len, other.len, "and_assign: length mismatch");
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// Bitwise NOT (tail kept zero).
    pub fn not(&self) -> BitVec {
        let mut out = BitVec {
            words: self.words.iter().map(|w| !w).collect(),
            len: self.len,
        };
        out.clear_tail();
        out
    }

    /// Indices of set bits, in increasing order.
    pub fn ones_iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut m = w;
            std::iter::from_fn(move || {
                if m == 0 {
                    None
                } else {
                    let t = m.trailing_zeros() as usize;
                    m &= m - 1;
                    Some(wi * 64 + t)
                }
            })
        })
    }
}

#[cfg(test)]
mod tests;
