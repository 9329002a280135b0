//! Cascade (Brassard, Salvail, "Secret-key reconciliation by public discussion",
//! EUROCRYPT '93, LNCS 765, pp. 410–423): the original four-pass protocol with back-tracking
//! ("cascading"), top-level block size k₁ = ⌈0.73/Q⌉ and k_{i+1} = 2k_i, as parametrised in
//! Martinez-Mateo et al., QIC 15 (2015) §3.
//!
//! Batched: all frames of a block go through the protocol together, and every round asks all
//! the parities it needs (top-level parities of a pass, or the left halves of every bisection
//! in progress, in every frame) in one message. Bob drives; Alice answers. Only Alice's
//! answers are counted as leakage (ledger kind `error_correction`).
//!
//! Pass 0 uses the original order; pass p ≥ 1 a uniformly random permutation derived from
//! Alice's public seed (ChaCha8 keyed by the seed, stream = frame·2^16 + pass).

use super::{EcContext, EcStats, FrameOutcome, Reconciler};
use crate::bits::BitVec;
use crate::classical::{Message, ParityRange, unexpected};
use crate::error::{ProtocolError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use std::collections::BTreeMap;

/// Cascade parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CascadeParams {
    /// Number of passes.
    pub passes: usize,
    /// k₁ = ⌈alpha / Q⌉.
    pub alpha: f64,
    /// Error-rate floor used when the estimate is 0.
    pub min_qber: f64,
}

impl Default for CascadeParams {
    fn default() -> Self {
        CascadeParams {
            passes: 4,
            alpha: 0.73,
            min_qber: 0.001,
        }
    }
}

impl CascadeParams {
    /// Top-level block sizes of every pass for frames of up to `n` bits.
    pub fn block_sizes(&self, qber: f64, n: usize) -> Vec<u32> {
        let q = qber.max(self.min_qber);
        let k1 = (self.alpha / q).ceil().max(2.0) as u64;
        (0..self.passes)
            .map(|p| (k1 << p).min(n.max(1) as u64).min(u32::MAX as u64) as u32)
            .collect()
    }
}

/// The original Cascade protocol.
#[derive(Debug, Clone)]
pub struct Cascade {
    /// Parameters.
    pub params: CascadeParams,
    /// Frame length.
    pub frame_bits: usize,
}

impl Default for Cascade {
    fn default() -> Self {
        Cascade {
            params: CascadeParams::default(),
            frame_bits: 1 << 16,
        }
    }
}

/// A frame's bits in every pass's order.
struct PassViews {
    /// `perm[p][pos]` = original index at position `pos` of pass p (pass 0: identity, empty).
    perm: Vec<Vec<u32>>,
    /// `inv[p][i]` = position of original index i in pass p.
    inv: Vec<Vec<u32>>,
    /// Bits in pass order.
    bits: Vec<BitVec>,
}

/// The permutation of `frame` in `pass`: Fisher–Yates (Durstenfeld) driven by ChaCha8 keyed with
/// Alice's public seed, with Lemire's multiply-shift mapping of 32-bit outputs to `0..=i`
/// (bias ≤ n/2^32, immaterial for a public permutation whose only job is to spread errors).
pub fn permutation(seed: &[u8; 32], frame: usize, pass: usize, n: usize) -> Vec<u32> {
    assert!(
        n <= u32::MAX as usize,
        "Cascade frames are limited to 2^32 bits"
    );
    let mut rng = ChaCha8Rng::from_seed(*seed);
    rng.set_stream(((frame as u64) << 16) | pass as u64);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = ((u64::from(rng.next_u32()) * (i as u64 + 1)) >> 32) as usize;
        p.swap(i, j);
    }
    p
}

/// `out[pos] = bits[perm[pos]]`, built a word at a time.
fn gather(bits: &BitVec, perm: &[u32]) -> BitVec {
    let src = bits.words();
    let mut words = vec![0u64; perm.len().div_ceil(64)];
    for (w, chunk) in words.iter_mut().zip(perm.chunks(64)) {
        let mut acc = 0u64;
        for (t, &o) in chunk.iter().enumerate() {
            acc |= ((src[(o >> 6) as usize] >> (o & 63)) & 1) << t;
        }
        *w = acc;
    }
    BitVec::from_words(words, perm.len())
}

impl PassViews {
    /// Views of a frame; `with_inverse` (needed only by the party that corrects bits) also
    /// builds the inverse permutations.
    fn new(
        frame_bits: &BitVec,
        seed: &[u8; 32],
        frame: usize,
        passes: usize,
        with_inverse: bool,
    ) -> PassViews {
        let n = frame_bits.len();
        let mut v = PassViews {
            perm: vec![vec![]],
            inv: vec![vec![]],
            bits: vec![frame_bits.clone()],
        };
        for p in 1..passes {
            let perm = permutation(seed, frame, p, n);
            let mut inv = Vec::new();
            if with_inverse {
                inv = vec![0u32; n];
                for (pos, &orig) in perm.iter().enumerate() {
                    inv[orig as usize] = pos as u32;
                }
            }
            v.bits.push(gather(frame_bits, &perm));
            v.perm.push(perm);
            v.inv.push(inv);
        }
        v
    }

    fn pos(&self, pass: usize, orig: usize) -> usize {
        if pass == 0 {
            orig
        } else {
            self.inv[pass][orig] as usize
        }
    }

    fn orig(&self, pass: usize, pos: usize) -> usize {
        if pass == 0 {
            pos
        } else {
            self.perm[pass][pos] as usize
        }
    }

    fn flip(&mut self, orig: usize) {
        for p in 0..self.bits.len() {
            let pos = self.pos(p, orig);
            self.bits[p].flip(pos);
        }
    }

    fn parity(&self, pass: usize, start: usize, end: usize) -> bool {
        self.bits[pass].parity_range(start, end)
    }
}

/// Top-level block ranges of a pass.
fn top_blocks(n: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n.div_ceil(k)).map(move |j| (j * k, ((j + 1) * k).min(n)))
}

fn random_seed(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// Send a parity request and wait for the answer.
fn ask(ctx: &mut EcContext<'_>, stats: &mut EcStats, msg: Message) -> Result<BitVec> {
    ctx.channel.send(&msg, ctx.ledger)?;
    let reply = ctx.channel.recv(ctx.ledger)?;
    stats.messages += 2;
    stats.round_trips += 1;
    match reply {
        Message::ParityReply { parities } => Ok(parities),
        other => Err(unexpected("ParityReply", &other)),
    }
}

type Active = BTreeMap<(usize, usize, usize), (usize, usize, bool)>;

/// One bisection round over all active ranges of all frames (one query message).
#[allow(clippy::too_many_arguments)]
fn bisection_round(
    ctx: &mut EcContext<'_>,
    stats: &mut EcStats,
    views: &mut [PassViews],
    frames: &mut [BitVec],
    flipped: &mut [u64],
    ks: &[Vec<usize>],
    top: &[Vec<BitVec>],
    active: &mut Active,
    pass: usize,
) -> Result<()> {
    let keys: Vec<(usize, usize, usize)> = active.keys().copied().collect();
    let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
    let mut queries: Vec<((usize, usize, usize), ParityRange)> = Vec::new();
    for key in keys {
        let (f, p, _) = key;
        let (s, e, ap) = active[&key];
        if views[f].parity(p, s, e) == ap {
            // Another correction made this range even: drop it and re-examine its top block.
            active.remove(&key);
            candidates.push(key);
            continue;
        }
        if e - s == 1 {
            // Error located: correct it. Its top block in every pass done so far changes parity.
            active.remove(&key);
            let orig = views[f].orig(p, s);
            views[f].flip(orig);
            frames[f].flip(orig);
            flipped[f] += 1;
            for (q, &k) in ks[f].iter().enumerate().take(pass + 1) {
                candidates.push((f, q, views[f].pos(q, orig) / k));
            }
            continue;
        }
        let mid = s + (e - s) / 2;
        queries.push((
            key,
            ParityRange {
                frame: f as u32,
                pass: p as u16,
                start: s as u32,
                end: mid as u32,
            },
        ));
    }
    if !queries.is_empty() {
        let reply = ask(
            ctx,
            stats,
            Message::ParityQuery {
                ranges: queries.iter().map(|q| q.1).collect(),
            },
        )?;
        if reply.len() != queries.len() {
            return Err(ProtocolError::Malformed(
                "ParityReply length differs from the query".into(),
            )
            .into());
        }
        for (i, (key, r)) in queries.iter().enumerate() {
            let (f, p, _) = *key;
            let (s, mid) = (r.start as usize, r.end as usize);
            let (_, e, ap) = active[key];
            let left = reply.get(i);
            if views[f].parity(p, s, mid) != left {
                active.insert(*key, (s, mid, left));
            } else {
                active.insert(*key, (mid, e, ap ^ left));
            }
        }
    }
    for key @ (f, p, j) in candidates {
        if active.contains_key(&key) {
            continue;
        }
        let n = views[f].bits[0].len();
        let k = ks[f][p];
        let (s, e) = (j * k, ((j + 1) * k).min(n));
        let ap = top[f][p].get(j);
        if views[f].parity(p, s, e) != ap {
            active.insert(key, (s, e, ap));
        }
    }
    Ok(())
}

impl Reconciler for Cascade {
    fn name(&self) -> &'static str {
        "cascade"
    }

    fn frame_lengths(&self, n: usize, _qber: f64) -> Vec<usize> {
        super::frame_lengths(n, self.frame_bits)
    }

    fn reconcile_alice(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &[BitVec],
    ) -> Result<(Vec<bool>, EcStats)> {
        let mut stats = EcStats::default();
        let max_n = frames.iter().map(|f| f.len()).max().unwrap_or(0);
        let block_sizes = self.params.block_sizes(ctx.qber_estimate, max_n);
        let seed = random_seed(ctx.rng);
        ctx.channel.send(
            &Message::CascadeStart {
                seed,
                block_sizes: block_sizes.clone(),
            },
            ctx.ledger,
        )?;
        stats.messages += 1;
        let views: Vec<PassViews> = frames
            .iter()
            .enumerate()
            .map(|(f, bits)| PassViews::new(bits, &seed, f, block_sizes.len(), false))
            .collect();
        loop {
            let msg = ctx.channel.recv(ctx.ledger)?;
            stats.messages += 1;
            let parities = match msg {
                Message::CascadeTopQuery { pass } => {
                    let p = pass as usize;
                    if p >= block_sizes.len() {
                        return Err(ProtocolError::Malformed(format!(
                            "Cascade pass {p} out of range"
                        ))
                        .into());
                    }
                    let mut out = BitVec::new();
                    for v in &views {
                        let n = v.bits[0].len();
                        let k = (block_sizes[p] as usize).min(n).max(1);
                        for (s, e) in top_blocks(n, k) {
                            out.push(v.parity(p, s, e));
                        }
                    }
                    out
                }
                Message::ParityQuery { ranges } => {
                    let mut out = BitVec::with_capacity(ranges.len());
                    for r in &ranges {
                        let v = views.get(r.frame as usize).ok_or_else(|| {
                            ProtocolError::Malformed(format!(
                                "Cascade frame {} out of range",
                                r.frame
                            ))
                        })?;
                        let (p, s, e) = (r.pass as usize, r.start as usize, r.end as usize);
                        if p >= block_sizes.len() || s >= e || e > v.bits[0].len() {
                            return Err(ProtocolError::Malformed(format!(
                                "bad parity range {r:?}"
                            ))
                            .into());
                        }
                        out.push(v.parity(p, s, e));
                    }
                    out
                }
                Message::CascadeDone => return Ok((vec![false; frames.len()], stats)),
                other => {
                    return Err(unexpected(
                        "CascadeTopQuery, ParityQuery or CascadeDone",
                        &other,
                    ));
                }
            };
            ctx.channel
                .send(&Message::ParityReply { parities }, ctx.ledger)?;
            stats.messages += 1;
            stats.round_trips += 1;
        }
    }

    fn reconcile_bob(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &mut [BitVec],
    ) -> Result<(Vec<FrameOutcome>, EcStats)> {
        let mut stats = EcStats::default();
        let (seed, block_sizes) = match ctx.channel.recv(ctx.ledger)? {
            Message::CascadeStart { seed, block_sizes } => (seed, block_sizes),
            other => return Err(unexpected("CascadeStart", &other)),
        };
        stats.messages += 1;
        if block_sizes.is_empty() || block_sizes.len() > 64 || block_sizes.contains(&0) {
            return Err(
                ProtocolError::Malformed(format!("Cascade block sizes {block_sizes:?}")).into(),
            );
        }
        let passes = block_sizes.len();
        let mut views: Vec<PassViews> = frames
            .iter()
            .enumerate()
            .map(|(f, bits)| PassViews::new(bits, &seed, f, passes, true))
            .collect();
        let mut flipped = vec![0u64; frames.len()];
        let ks: Vec<Vec<usize>> = views
            .iter()
            .map(|v| {
                block_sizes
                    .iter()
                    .map(|&k| (k as usize).min(v.bits[0].len()).max(1))
                    .collect()
            })
            .collect();
        // Alice's top-level parities: [frame][pass] -> bits.
        let mut top: Vec<Vec<BitVec>> = vec![Vec::new(); frames.len()];
        // Active bisection per (frame, pass, top block): (start, end, alice parity of range).
        let mut active: Active = BTreeMap::new();

        for pass in 0..passes {
            let reply = ask(
                ctx,
                &mut stats,
                Message::CascadeTopQuery { pass: pass as u16 },
            )?;
            let mut at = 0usize;
            for (f, v) in views.iter().enumerate() {
                let n = v.bits[0].len();
                let k = ks[f][pass];
                let nb = n.div_ceil(k);
                if at + nb > reply.len() {
                    return Err(ProtocolError::Malformed("ParityReply too short".into()).into());
                }
                let t = reply.slice(at, at + nb);
                at += nb;
                for (j, (s, e)) in top_blocks(n, k).enumerate() {
                    if v.parity(pass, s, e) != t.get(j) {
                        active.insert((f, pass, j), (s, e, t.get(j)));
                    }
                }
                top[f].push(t);
            }
            if at != reply.len() {
                return Err(ProtocolError::Malformed("ParityReply too long".into()).into());
            }
            // Bisection rounds until no top block of any pass done so far has odd error parity.
            loop {
                while !active.is_empty() {
                    bisection_round(
                        ctx,
                        &mut stats,
                        &mut views,
                        frames,
                        &mut flipped,
                        &ks,
                        &top,
                        &mut active,
                        pass,
                    )?;
                }
                // Final sweep (cheap, once per pass): ranges dropped mid-way leave their top
                // block unchecked only if nothing else touched it.
                for (f, v) in views.iter().enumerate() {
                    for p in 0..=pass {
                        for (j, (s, e)) in top_blocks(v.bits[0].len(), ks[f][p]).enumerate() {
                            if v.parity(p, s, e) != top[f][p].get(j) {
                                active.insert((f, p, j), (s, e, top[f][p].get(j)));
                            }
                        }
                    }
                }
                if active.is_empty() {
                    break;
                }
            }
        }
        ctx.channel.send(&Message::CascadeDone, ctx.ledger)?;
        stats.messages += 1;
        Ok((
            flipped
                .into_iter()
                .map(|n| FrameOutcome::Corrected { flipped: n })
                .collect(),
            stats,
        ))
    }
}

#[cfg(test)]
mod tests;
