//! The Cascade family of interactive reconciliation protocols (Brassard, Salvail, EUROCRYPT '93;
//! variants in [`variants`]), batched and on packed bits.
//!
//! Structure. Bob drives, Alice answers. Each regular pass cuts every frame into top-level blocks;
//! Bob asks Alice for their parities (one message for all frames), and every block whose parity
//! differs from his is bisected to one error, which he flips. A flip changes the parity of the
//! block holding that bit in every earlier pass: those blocks are bisected again ("cascading"),
//! until no block of any pass done so far disagrees. BICONF rounds (variant `biconf`) are passes
//! with a single block, a random half of the frame, repeated until a frame has seen 10 rounds in
//! a row without an error.
//!
//! Batching: all frames of a reconciliation move together; every round sends every parity
//! request of every frame in one [`Message::ParityQuery`] (round trips per frame ≈ those of one
//! frame, whatever the number of frames). Only Alice's answers count as leakage (ledger kind
//! `error_correction`), the convention of Brassard–Salvail and the efficiency literature.
//!
//! Pass layouts, shared by all frames of equal length (the permutations only need to be
//! independent of the errors, which are independent between frames), derived from Alice's public
//! seed with ChaCha8:
//! * pass 0: the natural order, blocks of k consecutive bits;
//! * passes with small blocks: a uniformly random permutation (Fisher–Yates), the frame's bits
//!   gathered once into that order, blocks of k consecutive positions;
//! * passes with blocks of at least a quarter of the frame, and BICONF rounds: the blocks are
//!   random subsets given as bit masks over the natural order, no gathering at all; a range
//!   `[start, end)` of such a block means the block's members among positions start..end, and
//!   bisection splits the position range in the middle (a half without members is skipped
//!   without a question). Parities are masked popcounts.
//!
//! Sub-block reuse (variants opt4, opt7, opt8): every parity Alice disclosed for a sub-block
//! (and the complementary half it implies) is remembered, and a later bisection of the same block
//! descends through known halves without asking.

pub mod variants;

use super::{EcContext, EcStats, FrameOutcome, Reconciler};
use crate::bits::BitVec;
use crate::classical::{Message, ParityRange, unexpected};
use crate::error::{ProtocolError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;
pub use variants::{CascadeVariant, Schedule};

/// Most BICONF rounds before giving up (the variant normally stops far earlier).
const MAX_BICONF_ROUNDS: usize = 200;

/// A Cascade reconciler.
#[derive(Debug, Clone)]
pub struct Cascade {
    /// Which member of the family.
    pub variant: CascadeVariant,
    /// Frame length.
    pub frame_bits: usize,
}

impl Default for Cascade {
    fn default() -> Self {
        Cascade {
            variant: CascadeVariant::Original,
            frame_bits: 1 << 16,
        }
    }
}

/// The permutation of frames of length `n` in `pass`: Fisher–Yates (Durstenfeld) driven by
/// ChaCha8 keyed with Alice's public seed, with Lemire's multiply-shift reduction of 32-bit
/// outputs (bias ≤ n/2^32, immaterial for a public permutation whose only job is to spread
/// errors).
pub fn permutation(seed: &[u8; 32], n: usize, pass: usize) -> Vec<u32> {
    assert!(
        n <= u32::MAX as usize,
        "Cascade frames are limited to 2^32 bits"
    );
    let mut rng = ChaCha8Rng::from_seed(*seed);
    rng.set_stream(((n as u64) << 20) | pass as u64);
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

/// Parity of the bits of `x` at the positions in `[lo, hi)` where `mask` is set.
fn masked_parity(x: &BitVec, mask: &BitVec, lo: usize, hi: usize) -> bool {
    range_fold(x.words(), mask.words(), lo, hi, |a, m| a & m) & 1 == 1
}

/// Members of `mask` in `[lo, hi)`.
fn masked_count(mask: &BitVec, lo: usize, hi: usize) -> u32 {
    let w = mask.words();
    range_fold(w, w, lo, hi, |_, m| m)
}

/// Σ popcount(f(a_w, m_w) restricted to [lo, hi)) over the words.
fn range_fold(a: &[u64], m: &[u64], lo: usize, hi: usize, f: impl Fn(u64, u64) -> u64) -> u32 {
    if lo >= hi {
        return 0;
    }
    let (ws, we) = (lo / 64, (hi - 1) / 64);
    let lo_mask = u64::MAX << (lo % 64);
    let hi_mask = if hi.is_multiple_of(64) {
        u64::MAX
    } else {
        (1u64 << (hi % 64)) - 1
    };
    if ws == we {
        return (f(a[ws], m[ws]) & lo_mask & hi_mask).count_ones();
    }
    let mut total =
        (f(a[ws], m[ws]) & lo_mask).count_ones() + (f(a[we], m[we]) & hi_mask).count_ones();
    for i in ws + 1..we {
        total += f(a[i], m[i]).count_ones();
    }
    total
}

/// How the positions of a frame are arranged in one pass.
enum PassLayout {
    /// Natural order (pass 0) or a permutation; blocks of `k` consecutive positions.
    Permuted {
        /// `perm[pos]` = frame position (None: identity).
        perm: Option<Vec<u32>>,
        /// `inv[position]` = pos in the permuted order (None: identity).
        inv: Option<Vec<u32>>,
        /// Block size.
        k: usize,
    },
    /// Blocks are random subsets (bit masks over the natural order).
    Masked {
        /// One mask per block.
        masks: Vec<BitVec>,
    },
}

impl PassLayout {
    fn blocks(&self, n: usize) -> usize {
        match self {
            PassLayout::Permuted { k, .. } => n.div_ceil(*k).max(1),
            PassLayout::Masked { masks } => masks.len(),
        }
    }

    /// Position range of a top-level block.
    fn block_range(&self, n: usize, b: usize) -> (usize, usize) {
        match self {
            PassLayout::Permuted { k, .. } => (b * k, ((b + 1) * k).min(n)),
            PassLayout::Masked { .. } => (0, n),
        }
    }

    /// The block holding frame position `orig`.
    fn block_of(&self, orig: usize) -> Option<usize> {
        match self {
            PassLayout::Permuted { inv: None, k, .. } => Some(orig / k),
            PassLayout::Permuted {
                inv: Some(inv), k, ..
            } => Some(inv[orig] as usize / k),
            PassLayout::Masked { masks } => masks.iter().position(|m| m.get(orig)),
        }
    }
}

/// Layouts of every pass for frames of one length, built on first use.
struct LengthLayouts {
    n: usize,
    passes: Vec<Option<Arc<PassLayout>>>,
}

/// The public description of a reconciliation (identical on both sides).
struct Plan {
    seed: [u8; 32],
    block_sizes: Vec<usize>,
    biconf_clean_rounds: u32,
    by_length: HashMap<usize, LengthLayouts>,
}

impl Plan {
    fn regular_passes(&self) -> usize {
        self.block_sizes.len()
    }

    fn layout(&mut self, n: usize, pass: usize) -> Arc<PassLayout> {
        let regular = self.block_sizes.len();
        let seed = self.seed;
        let k = if pass < regular {
            self.block_sizes[pass].min(n).max(1)
        } else {
            0
        };
        let entry = self.by_length.entry(n).or_insert_with(|| LengthLayouts {
            n,
            passes: Vec::new(),
        });
        if entry.passes.len() <= pass {
            entry.passes.resize(pass + 1, None);
        }
        if let Some(l) = &entry.passes[pass] {
            return l.clone();
        }
        let n = entry.n;
        let layout = if pass >= regular {
            // BICONF round: a uniformly random subset.
            let mut rng = ChaCha8Rng::from_seed(seed);
            rng.set_stream(((n as u64) << 20) | (1 << 19) | pass as u64);
            let words: Vec<u64> = (0..n.div_ceil(64)).map(|_| rng.next_u64()).collect();
            PassLayout::Masked {
                masks: vec![BitVec::from_words(words, n)],
            }
        } else if pass == 0 {
            PassLayout::Permuted {
                perm: None,
                inv: None,
                k,
            }
        } else {
            let perm = permutation(&seed, n, pass);
            if 4 * k >= n {
                let mut masks: Vec<BitVec> = (0..n.div_ceil(k)).map(|_| BitVec::zeros(n)).collect();
                for (pos, &orig) in perm.iter().enumerate() {
                    masks[pos / k].set(orig as usize, true);
                }
                PassLayout::Masked { masks }
            } else {
                let mut inv = vec![0u32; n];
                for (pos, &orig) in perm.iter().enumerate() {
                    inv[orig as usize] = pos as u32;
                }
                PassLayout::Permuted {
                    perm: Some(perm),
                    inv: Some(inv),
                    k,
                }
            }
        };
        let layout = Arc::new(layout);
        entry.passes[pass] = Some(layout.clone());
        layout
    }
}

/// One party's copy of a frame and its permuted views.
struct FrameBits {
    x: BitVec,
    views: Vec<Option<BitVec>>,
}

impl FrameBits {
    fn new(x: BitVec) -> Self {
        FrameBits {
            x,
            views: Vec::new(),
        }
    }

    fn ensure_view(&mut self, pass: usize, layout: &PassLayout) {
        if self.views.len() <= pass {
            self.views.resize(pass + 1, None);
        }
        if self.views[pass].is_none()
            && let PassLayout::Permuted {
                perm: Some(perm), ..
            } = layout
        {
            self.views[pass] = Some(gather(&self.x, perm));
        }
    }

    /// Parity of `[start, end)` of block `block` in `pass` (the view must exist).
    fn parity(
        &self,
        pass: usize,
        layout: &PassLayout,
        block: usize,
        start: usize,
        end: usize,
    ) -> bool {
        match layout {
            PassLayout::Permuted { perm: None, .. } => self.x.parity_range(start, end),
            PassLayout::Permuted { .. } => self.views[pass]
                .as_ref()
                .expect("view built")
                .parity_range(start, end),
            PassLayout::Masked { masks } => masked_parity(&self.x, &masks[block], start, end),
        }
    }

    fn flip(&mut self, orig: usize, layouts: &[Arc<PassLayout>]) {
        self.x.flip(orig);
        for (p, l) in layouts.iter().enumerate() {
            if let (PassLayout::Permuted { inv: Some(inv), .. }, Some(Some(v))) =
                (l.as_ref(), self.views.get_mut(p))
            {
                v.flip(inv[orig] as usize);
            }
        }
    }
}

fn random_seed(rng: &mut impl Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// A bisection in progress: `[start, end)` of a top-level block, with Alice's parity of it.
/// `node` numbers the range in the block's bisection tree (root 1, children 2i and 2i + 1):
/// splits are deterministic, so a node always denotes the same range.
#[derive(Debug, Clone, Copy)]
struct Bisect {
    frame: u32,
    pass: u16,
    block: u32,
    start: u32,
    end: u32,
    node: u32,
    alice: bool,
}

/// Cache key of a node: frame (16 bits), pass (8), block (20), node (20).
fn cache_key(b: &Bisect, node: u32) -> u64 {
    (u64::from(b.frame) << 48)
        | (u64::from(b.pass) << 40)
        | (u64::from(b.block) << 20)
        | u64::from(node)
}

/// A fast non-cryptographic hasher for the parity cache (Bob builds the keys from his own
/// bisections). Multiply-rotate as in FxHash, with a folded-multiply finish.
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // Folded multiply: mixes high key bits into the low bits the table indexes by.
        let p = u128::from(self.0) * 0x9e37_79b9_7f4a_7c15_u128;
        (p as u64) ^ ((p >> 64) as u64)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Alice's parity of the left child of each bisected node.
type ParityCache = HashMap<u64, bool, std::hash::BuildHasherDefault<FastHasher>>;

/// Bob's bookkeeping.
struct BobState {
    frames: Vec<FrameBits>,
    flipped: Vec<u64>,
    /// Alice's top-level parities per [frame][pass] (empty bitvec: not asked).
    top: Vec<Vec<BitVec>>,
    /// Blocks under bisection per [frame][pass].
    active: Vec<Vec<BitVec>>,
    /// Alice's sub-block parities (reuse variants).
    cache: ParityCache,
    reuse: bool,
    /// Layouts of the passes started so far, per frame (frames of different length differ).
    layouts: Vec<Vec<Arc<PassLayout>>>,
}

enum Step {
    Dropped,
    Found(usize),
    Ask(Bisect, u32),
}

impl BobState {
    fn len(&self, f: usize) -> usize {
        self.frames[f].x.len()
    }

    /// Advance one bisection as far as possible without Alice.
    fn step(&mut self, mut b: Bisect) -> Step {
        let f = b.frame as usize;
        let p = b.pass as usize;
        let layout = self.layouts[f][p].clone();
        loop {
            let (s, e) = (b.start as usize, b.end as usize);
            if self.frames[f].parity(p, &layout, b.block as usize, s, e) == b.alice {
                return Step::Dropped;
            }
            let single = match layout.as_ref() {
                PassLayout::Permuted { .. } => e - s == 1,
                PassLayout::Masked { masks } => masked_count(&masks[b.block as usize], s, e) == 1,
            };
            if single {
                let orig = match layout.as_ref() {
                    PassLayout::Permuted { perm: None, .. } => s,
                    PassLayout::Permuted {
                        perm: Some(perm), ..
                    } => perm[s] as usize,
                    PassLayout::Masked { masks } => (s..e)
                        .find(|&i| masks[b.block as usize].get(i))
                        .expect("one member in range"),
                };
                return Step::Found(orig);
            }
            let mid = s + (e - s) / 2;
            if let PassLayout::Masked { masks } = layout.as_ref() {
                let m = &masks[b.block as usize];
                if masked_count(m, s, mid) == 0 {
                    b.start = mid as u32;
                    b.node = 2 * b.node + 1;
                    continue;
                }
                if masked_count(m, mid, e) == 0 {
                    b.end = mid as u32;
                    b.node *= 2;
                    continue;
                }
            }
            if self.reuse
                && b.node < (1 << 19)
                && let Some(&left) = self.cache.get(&cache_key(&b, 2 * b.node))
            {
                self.descend(&mut b, mid, left);
                continue;
            }
            return Step::Ask(b, mid as u32);
        }
    }

    /// Move into the half that holds an error, given Alice's parity of the left half.
    fn descend(&mut self, b: &mut Bisect, mid: usize, alice_left: bool) {
        let f = b.frame as usize;
        let p = b.pass as usize;
        let layout = self.layouts[f][p].clone();
        if self.reuse && b.node < (1 << 19) {
            self.cache.insert(cache_key(b, 2 * b.node), alice_left);
        }
        let bob_left = self.frames[f].parity(p, &layout, b.block as usize, b.start as usize, mid);
        if bob_left != alice_left {
            b.end = mid as u32;
            b.alice = alice_left;
            b.node *= 2;
        } else {
            b.start = mid as u32;
            b.alice ^= alice_left;
            b.node = 2 * b.node + 1;
        }
    }

    /// A full top-level block, if it disagrees with Alice and is not being bisected already.
    fn check_block(&mut self, f: usize, p: usize, block: usize, out: &mut Vec<Bisect>) {
        if self.top[f][p].is_empty() || self.active[f][p].get(block) {
            return;
        }
        let layout = self.layouts[f][p].clone();
        let (s, e) = layout.block_range(self.len(f), block);
        let alice = self.top[f][p].get(block);
        if self.frames[f].parity(p, &layout, block, s, e) != alice {
            self.active[f][p].set(block, true);
            out.push(Bisect {
                frame: f as u32,
                pass: p as u16,
                block: block as u32,
                start: s as u32,
                end: e as u32,
                node: 1,
                alice,
            });
        }
    }

    fn flip(&mut self, f: usize, orig: usize, recheck: &mut Vec<(usize, usize, usize)>) {
        self.frames[f].flip(orig, &self.layouts[f]);
        self.flipped[f] += 1;
        for (p, l) in self.layouts[f].iter().enumerate() {
            if let Some(b) = l.block_of(orig) {
                recheck.push((f, p, b));
            }
        }
    }
}

/// Send a parity request and wait for the answer.
fn ask(
    ctx: &mut EcContext<'_>,
    stats: &mut EcStats,
    msg: Message,
    expect: usize,
) -> Result<BitVec> {
    ctx.channel.send(&msg, ctx.ledger)?;
    let reply = ctx.channel.recv(ctx.ledger)?;
    stats.messages += 2;
    stats.round_trips += 1;
    match reply {
        Message::ParityReply { parities } if parities.len() == expect => Ok(parities),
        Message::ParityReply { parities } => Err(ProtocolError::Malformed(format!(
            "{} parities for {expect} requests",
            parities.len()
        ))
        .into()),
        other => Err(unexpected("ParityReply", &other)),
    }
}

/// Bisection rounds until no block of the passes started so far disagrees with Alice.
fn settle(
    ctx: &mut EcContext<'_>,
    stats: &mut EcStats,
    st: &mut BobState,
    mut active: Vec<Bisect>,
) -> Result<()> {
    loop {
        let mut dropped_any = false;
        while !active.is_empty() {
            let mut next = Vec::new();
            let mut asked: Vec<(Bisect, u32)> = Vec::new();
            let mut recheck: Vec<(usize, usize, usize)> = Vec::new();
            for b in active.drain(..) {
                match st.step(b) {
                    Step::Dropped => {
                        dropped_any = true;
                        st.active[b.frame as usize][b.pass as usize].set(b.block as usize, false);
                        recheck.push((b.frame as usize, b.pass as usize, b.block as usize));
                    }
                    Step::Found(orig) => {
                        st.active[b.frame as usize][b.pass as usize].set(b.block as usize, false);
                        st.flip(b.frame as usize, orig, &mut recheck);
                    }
                    Step::Ask(b2, mid) => asked.push((b2, mid)),
                }
            }
            if !asked.is_empty() {
                let ranges: Vec<ParityRange> = asked
                    .iter()
                    .map(|(b, mid)| ParityRange {
                        frame: b.frame,
                        pass: b.pass,
                        block: b.block,
                        start: b.start,
                        end: *mid,
                    })
                    .collect();
                let reply = ask(ctx, stats, Message::ParityQuery { ranges }, asked.len())?;
                for (i, (mut b, mid)) in asked.into_iter().enumerate() {
                    st.descend(&mut b, mid as usize, reply.get(i));
                    next.push(b);
                }
            }
            for (f, p, blk) in recheck {
                st.check_block(f, p, blk, &mut next);
            }
            active = next;
        }
        // A bisection dropped because another correction evened its range leaves its top block
        // to the recheck above; a final sweep catches any block that still disagrees.
        if !dropped_any {
            return Ok(());
        }
        for f in 0..st.frames.len() {
            for p in 0..st.layouts[f].len() {
                for blk in 0..st.top[f][p].len() {
                    st.check_block(f, p, blk, &mut active);
                }
            }
        }
        if active.is_empty() {
            return Ok(());
        }
    }
}

/// Start (or reuse) the layouts of `pass` for every frame in `which`; Bob's views gathered.
fn start_pass(plan: &mut Plan, st: &mut BobState, pass: usize, which: &[usize]) {
    for &f in which {
        let n = st.len(f);
        let layout = plan.layout(n, pass);
        st.frames[f].ensure_view(pass, &layout);
        if st.layouts[f].len() <= pass {
            st.layouts[f].resize(pass + 1, layout.clone());
            st.top[f].resize(pass + 1, BitVec::new());
            st.active[f].resize(pass + 1, BitVec::new());
        }
        st.layouts[f][pass] = layout.clone();
        st.active[f][pass] = BitVec::zeros(layout.blocks(n));
    }
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
        let max_n = frames.iter().map(BitVec::len).max().unwrap_or(0);
        let sched = self.variant.schedule(ctx.qber_estimate, max_n);
        let seed = random_seed(ctx.rng);
        let msg = Message::CascadeStart {
            seed,
            block_sizes: sched.block_sizes.iter().map(|&k| k as u32).collect(),
            biconf_clean_rounds: sched.biconf_clean_rounds,
        };
        ctx.channel.send(&msg, ctx.ledger)?;
        stats.messages += 1;
        let mut plan = Plan {
            seed,
            block_sizes: sched.block_sizes,
            biconf_clean_rounds: sched.biconf_clean_rounds,
            by_length: HashMap::new(),
        };
        let max_pass = plan.regular_passes()
            + if plan.biconf_clean_rounds > 0 {
                MAX_BICONF_ROUNDS
            } else {
                0
            };
        let mut bits: Vec<FrameBits> = frames.iter().map(|f| FrameBits::new(f.clone())).collect();
        // Layouts per [frame][pass], looked up once.
        let mut layouts: Vec<Vec<Option<Arc<PassLayout>>>> = vec![Vec::new(); frames.len()];
        let mut layout_of = |plan: &mut Plan, f: usize, n: usize, p: usize| -> Arc<PassLayout> {
            let v = &mut layouts[f];
            if v.len() <= p {
                v.resize(p + 1, None);
            }
            v[p].get_or_insert_with(|| plan.layout(n, p)).clone()
        };
        loop {
            let msg = ctx.channel.recv(ctx.ledger)?;
            stats.messages += 1;
            let parities = match msg {
                Message::CascadeTopQuery {
                    pass,
                    frames: which,
                } => {
                    let p = pass as usize;
                    if p >= max_pass || which.len() != bits.len() {
                        return Err(ProtocolError::Malformed(format!(
                            "Cascade top query for pass {p}, {} frames",
                            which.len()
                        ))
                        .into());
                    }
                    let mut out = BitVec::new();
                    for f in which.ones_iter() {
                        let n = bits[f].x.len();
                        let layout = layout_of(&mut plan, f, n, p);
                        bits[f].ensure_view(p, &layout);
                        for b in 0..layout.blocks(n) {
                            let (s, e) = layout.block_range(n, b);
                            out.push(bits[f].parity(p, &layout, b, s, e));
                        }
                    }
                    out
                }
                Message::ParityQuery { ranges } => {
                    let mut out = BitVec::with_capacity(ranges.len());
                    for r in &ranges {
                        let (f, p, blk, s, e) = (
                            r.frame as usize,
                            r.pass as usize,
                            r.block as usize,
                            r.start as usize,
                            r.end as usize,
                        );
                        let fb = bits.get(f).ok_or_else(|| {
                            ProtocolError::Malformed(format!("Cascade frame {f} out of range"))
                        })?;
                        let n = fb.x.len();
                        if p >= max_pass || s >= e || e > n {
                            return Err(ProtocolError::Malformed(format!(
                                "bad parity range {r:?}"
                            ))
                            .into());
                        }
                        let layout = layout_of(&mut plan, f, n, p);
                        if blk >= layout.blocks(n)
                            || fb.views.get(p).is_none_or(|v| v.is_none())
                                && matches!(
                                    layout.as_ref(),
                                    PassLayout::Permuted { perm: Some(_), .. }
                                )
                        {
                            return Err(ProtocolError::Malformed(format!(
                                "parity range {r:?} before its pass"
                            ))
                            .into());
                        }
                        out.push(fb.parity(p, &layout, blk, s, e));
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
        let (seed, block_sizes, biconf) = match ctx.channel.recv(ctx.ledger)? {
            Message::CascadeStart {
                seed,
                block_sizes,
                biconf_clean_rounds,
            } => (seed, block_sizes, biconf_clean_rounds),
            other => return Err(unexpected("CascadeStart", &other)),
        };
        stats.messages += 1;
        if block_sizes.is_empty()
            || block_sizes.len() > 64
            || block_sizes.contains(&0)
            || biconf > 1000
        {
            return Err(ProtocolError::Malformed(format!(
                "Cascade schedule {block_sizes:?}, BICONF {biconf}"
            ))
            .into());
        }
        let reuse = self.variant.schedule(ctx.qber_estimate, 1).reuse;
        let mut plan = Plan {
            seed,
            block_sizes: block_sizes.iter().map(|&k| k as usize).collect(),
            biconf_clean_rounds: biconf,
            by_length: HashMap::new(),
        };
        let nf = frames.len();
        let mut st = BobState {
            frames: frames.iter().map(|f| FrameBits::new(f.clone())).collect(),
            flipped: vec![0; nf],
            top: vec![Vec::new(); nf],
            active: vec![Vec::new(); nf],
            cache: ParityCache::default(),
            reuse,
            layouts: vec![Vec::new(); nf],
        };
        let all: Vec<usize> = (0..nf).collect();
        let top_query = |ctx: &mut EcContext<'_>,
                         stats: &mut EcStats,
                         plan: &mut Plan,
                         st: &mut BobState,
                         pass: usize,
                         which: &[usize]|
         -> Result<Vec<Bisect>> {
            start_pass(plan, st, pass, which);
            let mut mask = BitVec::zeros(nf);
            let mut expect = 0;
            for &f in which {
                mask.set(f, true);
                expect += st.layouts[f][pass].blocks(st.len(f));
            }
            let reply = ask(
                ctx,
                stats,
                Message::CascadeTopQuery {
                    pass: pass as u16,
                    frames: mask,
                },
                expect,
            )?;
            let mut at = 0;
            let mut active = Vec::new();
            for &f in which {
                let nb = st.layouts[f][pass].blocks(st.len(f));
                st.top[f][pass] = reply.slice(at, at + nb);
                at += nb;
                for b in 0..nb {
                    st.check_block(f, pass, b, &mut active);
                }
            }
            Ok(active)
        };
        for pass in 0..plan.regular_passes() {
            let active = top_query(ctx, &mut stats, &mut plan, &mut st, pass, &all)?;
            settle(ctx, &mut stats, &mut st, active)?;
        }
        if biconf > 0 {
            let mut clean = vec![0u32; nf];
            for round in 0..MAX_BICONF_ROUNDS {
                let which: Vec<usize> = (0..nf).filter(|&f| clean[f] < biconf).collect();
                if which.is_empty() {
                    break;
                }
                let pass = plan.regular_passes() + round;
                let active = top_query(ctx, &mut stats, &mut plan, &mut st, pass, &which)?;
                for &f in &which {
                    clean[f] = if active.iter().any(|b| b.frame as usize == f) {
                        0
                    } else {
                        clean[f] + 1
                    };
                }
                settle(ctx, &mut stats, &mut st, active)?;
            }
        }
        ctx.channel.send(&Message::CascadeDone, ctx.ledger)?;
        stats.messages += 1;
        for (frame, fb) in frames.iter_mut().zip(st.frames) {
            *frame = fb.x;
        }
        Ok((
            st.flipped
                .into_iter()
                .map(|n| FrameOutcome::Corrected { flipped: n })
                .collect(),
            stats,
        ))
    }
}

#[cfg(test)]
mod tests;
