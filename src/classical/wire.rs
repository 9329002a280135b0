//! Byte-level encoding of messages: little-endian integers, LEB128 varints, length-prefixed
//! byte strings and bit vectors. Decoding never panics: malformed input is a
//! [`ProtocolError::Malformed`].

use crate::bits::BitVec;
use crate::error::ProtocolError;

/// Appends encoded values to a buffer.
#[derive(Default)]
pub struct WireWriter {
    /// The encoded bytes.
    pub buf: Vec<u8>,
}

impl WireWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// IEEE-754 f64, little-endian.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Unsigned LEB128.
    pub fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }
    /// Fixed-size bytes.
    pub fn fixed(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Varint length, then bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    /// Varint bit length, then ⌈len/8⌉ bytes (bit i = bit i%8 of byte i/8).
    pub fn bits(&mut self, v: &BitVec) {
        self.varint(v.len() as u64);
        let nbytes = v.len().div_ceil(8);
        let mut left = nbytes;
        for w in v.words() {
            let b = w.to_le_bytes();
            let take = left.min(8);
            self.buf.extend_from_slice(&b[..take]);
            left -= take;
        }
    }
    /// Varint count, then each value as a varint delta from the previous (values must be
    /// non-decreasing).
    pub fn sorted_u64s(&mut self, v: &[u64]) {
        self.varint(v.len() as u64);
        let mut prev = 0u64;
        for &x in v {
            debug_assert!(x >= prev, "sorted_u64s: not sorted");
            self.varint(x - prev);
            prev = x;
        }
    }
}

/// Reads encoded values from a byte slice.
pub struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: &str, pos: usize) -> ProtocolError {
    ProtocolError::Malformed(format!("{what} at byte {pos}"))
}

impl<'a> WireReader<'a> {
    /// Read from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        WireReader { buf, pos: 0 }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.remaining() < n {
            return Err(malformed(&format!("truncated {what}"), self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1, "u8")?[0])
    }
    /// Little-endian u16.
    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.take(2, "u16")?.try_into().unwrap()))
    }
    /// Little-endian u64.
    pub fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.take(8, "u64")?.try_into().unwrap()))
    }
    /// f64.
    pub fn f64(&mut self) -> Result<f64, ProtocolError> {
        Ok(f64::from_le_bytes(self.take(8, "f64")?.try_into().unwrap()))
    }
    /// Unsigned LEB128 (at most 10 bytes).
    #[inline]
    pub fn varint(&mut self) -> Result<u64, ProtocolError> {
        // Fast path: one- and two-byte values with enough input left.
        if let Some(&b0) = self.buf.get(self.pos) {
            if b0 & 0x80 == 0 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.buf.get(self.pos + 1)
                && b1 & 0x80 == 0
            {
                self.pos += 2;
                return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
            }
        }
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(malformed("varint overflow", self.pos));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint too long", self.pos))
    }
    /// A varint that must fit `usize` and not exceed `max`.
    pub fn len(&mut self, max: usize, what: &str) -> Result<usize, ProtocolError> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(malformed(
                &format!("{what} length {v} exceeds {max}"),
                self.pos,
            ));
        }
        Ok(v as usize)
    }
    /// Fixed-size bytes.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        Ok(self.take(N, "fixed bytes")?.try_into().unwrap())
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.len(self.remaining(), "bytes")?;
        self.take(n, "bytes")
    }
    /// A bit vector written by [`WireWriter::bits`].
    pub fn bits(&mut self) -> Result<BitVec, ProtocolError> {
        let n = self.len(self.remaining().saturating_mul(8), "bit vector")?;
        let b = self.take(n.div_ceil(8), "bit vector")?;
        let v = BitVec::from_bytes_le(b, n);
        // Padding bits must be zero (canonical encoding).
        if n % 8 != 0 && b[b.len() - 1] >> (n % 8) != 0 {
            return Err(malformed("non-zero padding in bit vector", self.pos));
        }
        Ok(v)
    }
    /// A list written by [`WireWriter::sorted_u64s`].
    pub fn sorted_u64s(&mut self) -> Result<Vec<u64>, ProtocolError> {
        let n = self.len(self.remaining(), "list")?;
        let mut out = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev
                .checked_add(self.varint()?)
                .ok_or_else(|| malformed("list value overflow", self.pos))?;
            out.push(prev);
        }
        Ok(out)
    }
    /// Fail unless everything was read.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.remaining() != 0 {
            return Err(malformed(
                &format!("{} trailing bytes", self.remaining()),
                self.pos,
            ));
        }
        Ok(())
    }
}
