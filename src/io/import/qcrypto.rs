//! qcrypto / S-Fifteen Instruments timestamp files (Kurtsiefer group, `kurtsiefer/qcrypto`,
//! `s-fifteen-instruments/qcrypto`; `reference/formats.md` §5).
//!
//! * **Raw events** (`readevents -a1`): 64-bit values `v`; the time is `v >> 15` in 125 ps
//!   units (timestamp3) or `v >> 10` in 1/256 ns (timestamp7, 4 ps), the 4-bit detector
//!   pattern is `v & 0xF`. On disk either the legacy order (two LE u32 words, high word
//!   first: timestamp3, `readevents7 -X`, chopper/costream) or native LE u64. With 1/256 ns
//!   resolution bit 4 marks dummy/rollover events, which are dropped and counted. The 2^49·125
//!   ps (≈ 19.5 h) rollover is unwrapped. Each set pattern bit becomes one detection on
//!   channel 0–3 (multi-bit patterns are flagged as multi-clicks, the pattern kept in `aux`).
//! * **Type-1 packets** (chopper2): a 20-byte header `{tag 1|0x101, epoch, length, 49, 4}` and
//!   raw events in legacy order up to an all-zero terminator.
//! * **Type-2 packets** (chopper): a 24-byte header `{tag 2|0x102, epoch, length, timeorder w,
//!   basebits d, protocol}` and a bit stream (MSB first in LE u32 words) of `w`-bit time
//!   differences in 125 ps from the previous event (the first from `epoch << 32`), each
//!   followed by `d` data bits; a time field 0 escapes to a 32-bit difference, a field 1 with
//!   zero data ends the stream. The data bits go to `aux`; the channel is 0.

use super::{Counting, Decode, ImportOptions, Tick};
use crate::error::{FormatError, Result};
use crate::io::detection_log::{RECORD_FLAG_MULTI, Record, RecordKind};
use std::io::Read;

/// Word order of raw 64-bit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// Decide from the data: the order in which consecutive times increase.
    Auto,
    /// High 32-bit word first (timestamp3, `readevents7 -X`).
    Legacy,
    /// Little-endian u64 (`readevents7` without `-X`).
    Native,
}

/// Time resolution of raw events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 125 ps (`v >> 15`).
    Ps125,
    /// 1/256 ns ≈ 3.9 ps (`v >> 10`).
    Ps4,
}

impl Resolution {
    /// The tick.
    pub fn tick(self) -> Tick {
        match self {
            Resolution::Ps125 => Tick {
                num: 1,
                den: 8_000_000_000,
            },
            Resolution::Ps4 => Tick {
                num: 1,
                den: 256_000_000_000,
            },
        }
    }

    fn shift(self) -> u32 {
        match self {
            Resolution::Ps125 => 15,
            Resolution::Ps4 => 10,
        }
    }
}

fn event(bytes: &[u8], order: WordOrder) -> u64 {
    let lo = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let hi = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    match order {
        WordOrder::Legacy => (u64::from(lo) << 32) | u64::from(hi),
        _ => (u64::from(hi) << 32) | u64::from(lo),
    }
}

/// Pick the word order under which more consecutive non-dummy times increase.
fn detect_order(sample: &[u8], res: Resolution) -> WordOrder {
    let score = |order: WordOrder| {
        let times: Vec<u64> = sample
            .chunks_exact(8)
            .map(|c| event(c, order))
            .filter(|v| v & 0xF != 0)
            .map(|v| v >> res.shift())
            .collect();
        times.windows(2).filter(|w| w[1] >= w[0]).count()
    };
    if score(WordOrder::Legacy) > score(WordOrder::Native) {
        WordOrder::Legacy
    } else {
        WordOrder::Native
    }
}

/// Unwraps the 49/54-bit counter and emits detections.
struct RawEmitter {
    res: Resolution,
    bits: u32,
    wraps: i64,
    last: Option<u64>,
    empty: u64,
}

impl RawEmitter {
    fn new(res: Resolution) -> Self {
        RawEmitter {
            res,
            bits: 64 - res.shift(),
            wraps: 0,
            last: None,
            empty: 0,
        }
    }

    fn emit(&mut self, v: u64, offset: u64, d: &mut Decode<'_>) -> Result<()> {
        let pattern = (v & 0xF) as u8;
        if self.res == Resolution::Ps4 && v & 0x10 != 0 {
            d.sink.report.dummies += 1;
            return Ok(());
        }
        if pattern == 0 {
            self.empty += 1;
            return Ok(());
        }
        let t = v >> self.res.shift();
        if let Some(last) = self.last {
            // A drop by more than half the range is a rollover of the counter.
            if t < last && last - t > 1u64 << (self.bits - 1) {
                self.wraps += 1;
                d.sink.report.overflows += 1;
            }
        }
        self.last = Some(t);
        let time = (self.wraps << self.bits) + t as i64;
        let multi = pattern.count_ones() > 1;
        for ch in 0..4u16 {
            if pattern >> ch & 1 == 1 {
                d.emit(
                    Record {
                        time,
                        channel: ch,
                        kind: RecordKind::Detection,
                        flags: if multi { RECORD_FLAG_MULTI } else { 0 },
                        aux: u32::from(pattern),
                    },
                    offset,
                )?;
            }
        }
        Ok(())
    }
}

/// Raw `-a1` events.
pub fn decode_raw<R: Read>(
    r: &mut Counting<R>,
    d: &mut Decode<'_>,
    opts: &ImportOptions,
) -> Result<Tick> {
    let res = opts.qcrypto_resolution;
    let mut buf = vec![0u8; 1 << 16];
    let mut order = opts.word_order;
    let mut em = RawEmitter::new(res);
    let mut n_events = 0u64;
    loop {
        let at = r.offset;
        let n = r.read_records(&mut buf, 8, "qcrypto 64-bit event")?;
        if n == 0 {
            break;
        }
        if order == WordOrder::Auto {
            order = detect_order(&buf[..n.min(8 * 4096)], res);
        }
        for (i, c) in buf[..n].chunks_exact(8).enumerate() {
            em.emit(event(c, order), at + 8 * i as u64, d)?;
            n_events += 1;
        }
    }
    d.file.device_records = n_events;
    d.file.details.insert(
        "word_order".into(),
        match order {
            WordOrder::Legacy => "legacy (high word first)",
            _ => "native (little-endian u64)",
        }
        .into(),
    );
    d.file
        .details
        .insert("empty_patterns".into(), em.empty.into());
    Ok(res.tick())
}

fn header_words<R: Read, const N: usize>(
    r: &mut Counting<R>,
    what: &'static str,
) -> Result<[u32; N]> {
    let mut b = vec![0u8; 4 * N];
    r.need(&mut b, what)?;
    Ok(std::array::from_fn(|i| {
        u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
    }))
}

/// Type-1 packet file (legacy-order raw events after a 20-byte header).
pub fn decode_t1<R: Read>(
    r: &mut Counting<R>,
    d: &mut Decode<'_>,
    opts: &ImportOptions,
) -> Result<Tick> {
    let h: [u32; 5] = header_words(r, "qcrypto type-1 header")?;
    if h[0] != 1 && h[0] != 0x101 {
        return Err(r.invalid(
            0,
            "tag",
            format!("{:#x} is not a type-1 packet (1 or 0x101)", h[0]),
        ));
    }
    if h[3] != 49 || h[4] != 4 {
        return Err(r.invalid(
            12,
            "bitsperentry/basebits",
            format!("{}/{} (expected 49/4)", h[3], h[4]),
        ));
    }
    let res = opts.qcrypto_resolution;
    let mut em = RawEmitter::new(res);
    let mut ev = [0u8; 8];
    let mut n = 0u64;
    loop {
        let at = r.offset;
        if !r.read_full(&mut ev, "qcrypto type-1 event")? {
            return Err(FormatError::Truncated {
                path: r.path().to_path_buf(),
                offset: at,
                what: "qcrypto type-1 terminator (all-zero event)",
                needed: 8,
                available: 0,
            }
            .into());
        }
        let v = event(&ev, WordOrder::Legacy);
        if v == 0 {
            break;
        }
        em.emit(v, at, d)?;
        n += 1;
    }
    if h[2] != 0 && u64::from(h[2]) != n {
        return Err(r.invalid(
            8,
            "length",
            format!("header announces {} events, the file holds {n}", h[2]),
        ));
    }
    d.file.device_records = n;
    d.file
        .details
        .insert("epoch".into(), format!("{:08x}", h[1]).into());
    Ok(res.tick())
}

/// Reads an MSB-first bit stream packed in little-endian u32 words.
struct BitReader<'a, R: Read> {
    r: &'a mut Counting<R>,
    word: u64,
    bits: u32,
}

impl<R: Read> BitReader<'_, R> {
    fn take(&mut self, n: u32) -> Result<u64> {
        debug_assert!(n <= 32);
        while self.bits < n {
            let mut w = [0u8; 4];
            self.r.need(&mut w, "qcrypto type-2 bit stream")?;
            self.word = (self.word << 32) | u64::from(u32::from_le_bytes(w));
            self.bits += 32;
        }
        let v = (self.word >> (self.bits - n)) & ((1u64 << n) - 1);
        self.bits -= n;
        Ok(v)
    }
}

/// Type-2 packet file.
pub fn decode_t2<R: Read>(r: &mut Counting<R>, d: &mut Decode<'_>) -> Result<Tick> {
    let h: [u32; 6] = header_words(r, "qcrypto type-2 header")?;
    if h[0] != 2 && h[0] != 0x102 {
        return Err(r.invalid(
            0,
            "tag",
            format!("{:#x} is not a type-2 packet (2 or 0x102)", h[0]),
        ));
    }
    let (w, bits) = (h[3], h[4]);
    if !(2..=32).contains(&w) || bits > 8 {
        return Err(r.invalid(12, "timeorder/basebits", format!("{w}/{bits}")));
    }
    // Times are 125 ps units from the epoch's start, `epoch · 2^32`; they must fit the log's
    // signed 64-bit times.
    let mut t = i64::try_from(u64::from(h[1]) << 32).map_err(|_| {
        r.invalid(
            4,
            "epoch",
            format!(
                "{:#010x}: times from epoch · 2^32 do not fit 63 bits (not a type-2 file of this format?)",
                h[1]
            ),
        )
    })?;
    let mut n = 0u64;
    let mut br = BitReader {
        r,
        word: 0,
        bits: 0,
    };
    loop {
        let at = br.r.offset;
        let field = br.take(w)?;
        let diff = if field == 0 { br.take(32)? } else { field };
        let data = if bits > 0 { br.take(bits)? } else { 0 };
        if field == 1 && data == 0 {
            break;
        }
        t = match t.checked_add(diff as i64) {
            Some(x) => x,
            None => {
                return Err(br.r.invalid(
                    at,
                    "time difference",
                    "the event time overflows 63 bits",
                ));
            }
        };
        d.emit(
            Record {
                time: t,
                channel: 0,
                kind: RecordKind::Detection,
                flags: 0,
                aux: data as u32,
            },
            at,
        )?;
        n += 1;
    }
    if h[2] != 0 && u64::from(h[2]) != n {
        return Err(r.invalid(
            8,
            "length",
            format!("header announces {} events, the stream holds {n}", h[2]),
        ));
    }
    d.file.device_records = n;
    d.file
        .details
        .insert("epoch".into(), format!("{:08x}", h[1]).into());
    d.file.details.insert("protocol".into(), h[5].into());
    d.file.details.insert("basebits".into(), bits.into());
    Ok(Resolution::Ps125.tick())
}

/// Encode events as a type-2 bit stream (tests): `(time in 125 ps, data)`, strictly
/// increasing by at least 2 units.
pub fn encode_t2(epoch: u32, w: u32, bits: u32, protocol: u32, events: &[(u64, u32)]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for v in [2u32, epoch, events.len() as u32, w, bits, protocol] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    struct Bits {
        acc: u64,
        n: u32,
        words: Vec<u32>,
    }
    impl Bits {
        fn put(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.acc = (self.acc << 1) | ((v >> i) & 1);
                self.n += 1;
                if self.n == 32 {
                    self.words.push(self.acc as u32);
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
    }
    let mut b = Bits {
        acc: 0,
        n: 0,
        words: Vec::new(),
    };
    let mut prev = u64::from(epoch) << 32;
    for &(t, data) in events {
        let diff = t - prev;
        assert!(diff >= 2, "type-2 differences are ≥ 2");
        if diff < 1 << w {
            b.put(diff, w);
        } else {
            b.put(0, w);
            b.put(diff, 32);
        }
        b.put(u64::from(data), bits);
        prev = t;
    }
    b.put(1, w);
    b.put(0, bits);
    if b.n > 0 {
        let pad = 32 - b.n;
        b.put(0, pad);
    }
    let words = b.words;
    for wd in words {
        out.extend_from_slice(&wd.to_le_bytes());
    }
    out
}
