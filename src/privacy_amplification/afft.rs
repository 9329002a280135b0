//! Exact long products in GF(2)\[z\] by an additive FFT over GF(2^64), for Toeplitz hashing of
//! blocks up to 2^30 bits.
//!
//! **Packing.** A binary polynomial is cut into 32-bit pieces, each read as an element of
//! GF(2^64) = GF(2)\[z\]/(z^64 + z^4 + z^3 + z + 1) in the polynomial basis, i.e. A(z) =
//! Σ_e a_e(z)·z^(32e) becomes Â(y) = Σ_e a_e·y^e ∈ GF(2^64)\[y\]. The product of two pieces has
//! degree ≤ 62 < 64, so no reduction modulo the field polynomial ever happens and the
//! coefficient c_e of Ĉ = Â·B̂ is the carry-less sum of the piece products; C(z) =
//! Σ_e c_e(z)·z^(32e) (overlapping pieces XOR). This is Kronecker segmentation with 32-bit
//! pieces, as used for binary polynomials by Brent, Gaudry, Thomé and Zimmermann, "Faster
//! multiplication in GF(2)\[x\]", ANTS 2008, and by Chen, Cheng, Kuo, Li and Yang,
//! arXiv:1708.09746 (2017).
//!
//! **Transform.** Â and B̂ are evaluated on the subspace V_ℓ = span(β_0, …, β_(ℓ−1)) of a
//! Cantor basis (β_0 = 1, β_i² + β_i = β_(i−1); D. G. Cantor, "On arithmetical algorithms
//! over finite fields", JCTA 50 (1989)), multiplied pointwise and interpolated back, with the
//! Lin–Chung–Han transform ("Novel polynomial basis and its application to Reed–Solomon
//! erasure codes", FOCS 2014). With a Cantor basis the subspace polynomials
//! s_i(y) = Π_(v∈V_i)(y − v) = Σ_(j ⊆ i) y^(2^j) have binary coefficients (j ⊆ i: the bits
//! of j are a subset of those of i, Lucas' theorem), s_i(β_i) = 1 and s_i(β_j) = β_(j−i), so:
//!
//! * the novel basis is X_k(y) = Π_(bit i of k) s_i(y), and the change from the monomial basis
//!   ([`Transform::to_novel`], [`Transform::from_novel`]) is a cascade of divisions by the binary s_i — XORs only;
//! * the butterfly constant of layer i, block k (points k·2^(i+1) + V_(i+1)) is
//!   s_i(Σ_b k_b β_(i+1+b)) = Σ_b k_b β_(b+1) =: τ(k), the same table for every layer.
//!
//! Everything is exact finite-field arithmetic: there is no rounding to bound.
//!
//! **Wrap-around.** The product is computed modulo s_ℓ(y) = y^(2^ℓ) + Σ_(j ⊊ ℓ) y^(2^j). A
//! Toeplitz hash needs only a window of the product, so ℓ may be smaller than the product's
//! degree as long as the folded terms land below that window ([`Transform::for_window`]).

use crate::kernels::Kernels;
use crate::kernels::portable::gf64_mul;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Largest transform: 2^30 elements (2^35 bits of product), far above any block in use.
pub const MAX_LOG_LEN: u32 = 30;

/// log2 of the chunk that is transformed in cache (2^16 elements = 512 KiB).
const CHUNK_LOG: u32 = 16;
/// Slices of this many elements are the unit of parallel work in whole-array passes.
const PAR_GRAIN: usize = 1 << 14;

/// A Cantor basis β_0..β_63 of GF(2^64) over GF(2) and the byte tables of τ.
pub struct CantorBasis {
    beta: [u64; 64],
    /// tau_bytes[q][v] = τ(v << 8q) for q < 4 (τ is linear).
    tau_bytes: [[u64; 256]; 4],
}

/// Solve y² + y = c in GF(2^64) by Gaussian elimination over GF(2); `None` when Tr(c) = 1.
/// Of the two solutions {y, y + 1} the one with bit 0 clear is returned.
fn solve_artin_schreier(c: u64) -> Option<u64> {
    // Columns of the linear map L(y) = y² + y on the basis z^k.
    let cols: Vec<u64> = (0..64)
        .map(|k| {
            let e = 1u64 << k;
            gf64_mul(e, e) ^ e
        })
        .collect();
    // Rows of the augmented system: row r has bit k = bit r of L(z^k), and the rhs bit r of c.
    let mut rows: Vec<(u64, bool)> = (0..64)
        .map(|r| {
            let mut w = 0u64;
            for (k, col) in cols.iter().enumerate() {
                w |= ((col >> r) & 1) << k;
            }
            (w, (c >> r) & 1 == 1)
        })
        .collect();
    let mut pivot_of_col = [usize::MAX; 64];
    let mut next = 0;
    // Column 0 is L(1) = 0, so y_0 is free; eliminate on columns 1..64.
    for (col, pivot_slot) in pivot_of_col.iter_mut().enumerate().skip(1) {
        let Some(p) = (next..64).find(|&r| rows[r].0 >> col & 1 == 1) else {
            continue;
        };
        rows.swap(next, p);
        let pivot = rows[next];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != next && row.0 >> col & 1 == 1 {
                row.0 ^= pivot.0;
                row.1 ^= pivot.1;
            }
        }
        *pivot_slot = next;
        next += 1;
    }
    // Inconsistent rows (0 = 1) mean no solution.
    if rows[next..].iter().any(|&(w, b)| w == 0 && b) {
        return None;
    }
    let mut y = 0u64;
    for (col, &r) in pivot_of_col.iter().enumerate() {
        if r != usize::MAX && rows[r].1 {
            y |= 1 << col;
        }
    }
    Some(y)
}

impl CantorBasis {
    /// The basis (computed once per process).
    pub fn get() -> &'static CantorBasis {
        static BASIS: OnceLock<CantorBasis> = OnceLock::new();
        BASIS.get_or_init(|| {
            let mut beta = [0u64; 64];
            beta[0] = 1;
            for i in 1..64 {
                beta[i] = solve_artin_schreier(beta[i - 1])
                    .expect("a Cantor basis exists in GF(2^64) (64 is a power of two)");
            }
            let mut tau_bytes = [[0u64; 256]; 4];
            for (q, table) in tau_bytes.iter_mut().enumerate() {
                for (v, t) in table.iter_mut().enumerate() {
                    let mut acc = 0;
                    for b in 0..8 {
                        if v >> b & 1 == 1 {
                            acc ^= beta[8 * q + b + 1];
                        }
                    }
                    *t = acc;
                }
            }
            CantorBasis { beta, tau_bytes }
        })
    }

    /// β_i.
    pub fn beta(&self, i: usize) -> u64 {
        self.beta[i]
    }

    /// The point of V_64 with coordinates `v`: Σ_b v_b β_b.
    pub fn point(&self, v: u64) -> u64 {
        (0..64)
            .filter(|&b| v >> b & 1 == 1)
            .fold(0, |acc, b| acc ^ self.beta[b])
    }

    /// τ(k) = Σ_b k_b β_(b+1), the butterfly constant of block k (k < 2^32).
    #[inline]
    pub fn tau(&self, k: u64) -> u64 {
        debug_assert!(k < 1 << 32);
        self.tau_bytes[0][(k & 255) as usize]
            ^ self.tau_bytes[1][(k >> 8 & 255) as usize]
            ^ self.tau_bytes[2][(k >> 16 & 255) as usize]
            ^ self.tau_bytes[3][(k >> 24 & 255) as usize]
    }
}

/// The exponents 2^j of the lower terms of s_i (j ⊊ i as bit sets), descending.
fn lower_exponents(i: u32) -> Vec<usize> {
    let mut out = Vec::new();
    // Enumerate the proper subsets of i's bits.
    let mut j = i;
    loop {
        j = j.wrapping_sub(1) & i;
        out.push(1usize << j);
        if j == 0 {
            break;
        }
    }
    if i == 0 {
        out.clear();
    }
    out
}

/// A transform of length 2^ℓ with its twiddle table.
pub struct Transform {
    log_len: u32,
    chunk_log: u32,
    /// τ(k) for k < 2^(chunk_log − 1).
    tw: Vec<u64>,
    /// Conversion steps inside a chunk (unit: one element).
    chunk_ops: Vec<XorOp>,
    /// Conversion steps of the rows above the chunk (unit: one row of a chunk's length).
    row_ops: Vec<XorOp>,
}

impl Transform {
    /// A transform of length 2^log_len (1 ≤ log_len ≤ [`MAX_LOG_LEN`]).
    pub fn new(log_len: u32) -> Transform {
        Transform::with_chunk_log(log_len, CHUNK_LOG)
    }

    /// A transform that works on in-cache chunks of 2^chunk_log elements (tests use small
    /// chunks to reach the whole-array passes on small inputs).
    pub fn with_chunk_log(log_len: u32, chunk_log: u32) -> Transform {
        assert!(
            (1..=MAX_LOG_LEN).contains(&log_len),
            "additive FFT length 2^{log_len} unsupported"
        );
        assert!(
            chunk_log.is_power_of_two(),
            "the chunk's log must be a power of two (y^(2^c) + y is then a subspace polynomial)"
        );
        let chunk_log = log_len.min(chunk_log);
        let basis = CantorBasis::get();
        let tw = (0..1u64 << (chunk_log - 1)).map(|k| basis.tau(k)).collect();
        let mut chunk_ops = Vec::new();
        conversion_ops(chunk_log, 1, 1, &mut chunk_ops);
        let mut row_ops = Vec::new();
        conversion_ops(log_len - chunk_log, 1, 1, &mut row_ops);
        Transform {
            log_len,
            chunk_log,
            tw,
            chunk_ops,
            row_ops,
        }
    }

    /// The smallest transform whose product of an `a_len`-element and a `b_len`-element
    /// polynomial is exact on elements `[lo, hi]` (see the module notes on wrap-around).
    pub fn for_window(a_len: usize, b_len: usize, lo: usize, hi: usize) -> Option<Transform> {
        let deg = a_len + b_len - 2; // degree of the full product
        for log in 1..=MAX_LOG_LEN {
            let len = 1usize << log;
            if hi >= len || a_len > len || b_len > len {
                continue;
            }
            if deg < len {
                return Some(Transform::new(log));
            }
            // y^(2^ℓ + t) ≡ Σ_j y^(2^j + t): the folded part must stay below 2^ℓ (no second
            // fold) and below the window.
            let over = deg - len + 1; // t < over
            let top = lower_exponents(log).first().copied().unwrap_or(0);
            // A factor y^0 never occurs for ℓ ≥ 1 (j = 0 gives y^1), so the folded terms lie in
            // [1, top + over − 1].
            if top + over - 1 < len && top + over - 1 < lo {
                return Some(Transform::new(log));
            }
        }
        None
    }

    /// Length 2^ℓ.
    pub fn len(&self) -> usize {
        1 << self.log_len
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// log2 of the length.
    pub fn log_len(&self) -> u32 {
        self.log_len
    }

    fn chunk_bases(&self, chunk: usize) -> Vec<u64> {
        let basis = CantorBasis::get();
        let o = chunk << self.chunk_log;
        (0..self.chunk_log)
            .map(|i| basis.tau((o >> (i + 1)) as u64))
            .collect()
    }

    /// Novel-basis coefficients → values at the points of V_ℓ (point index v ↦ Σ v_b β_b).
    ///
    /// Layers above the chunk run two at a time (radix 4) on cache-sized segments, so each
    /// pair costs one pass over memory; the rest runs chunk by chunk in cache.
    pub fn forward(&self, k: &Kernels, data: &mut [u64]) {
        assert_eq!(data.len(), self.len());
        let mut i = self.log_len;
        while i > self.chunk_log {
            if i - 1 > self.chunk_log {
                top_radix4(k, data, i - 1, true);
                i -= 2;
            } else {
                top_radix2(k, data, i - 1, true);
                i -= 1;
            }
        }
        data.par_chunks_mut(1 << self.chunk_log)
            .enumerate()
            .for_each(|(q, chunk)| k.afft_chunk_forward(chunk, &self.tw, &self.chunk_bases(q)));
    }

    /// Inverse of [`Transform::forward`].
    pub fn inverse(&self, k: &Kernels, data: &mut [u64]) {
        assert_eq!(data.len(), self.len());
        data.par_chunks_mut(1 << self.chunk_log)
            .enumerate()
            .for_each(|(q, chunk)| k.afft_chunk_inverse(chunk, &self.tw, &self.chunk_bases(q)));
        // Undo the top layers in the reverse of the order `forward` grouped them.
        let mut groups = Vec::new();
        let mut i = self.log_len;
        while i > self.chunk_log {
            if i - 1 > self.chunk_log {
                groups.push((i - 1, true));
                i -= 2;
            } else {
                groups.push((i - 1, false));
                i -= 1;
            }
        }
        for &(top, radix4) in groups.iter().rev() {
            if radix4 {
                top_radix4(k, data, top, false);
            } else {
                top_radix2(k, data, top, false);
            }
        }
    }

    /// Monomial → novel basis, in place.
    ///
    /// With τ = 2^c (c = the chunk's log, a power of two) the subspace polynomial s_c(y) =
    /// y^τ + y is a binomial and s_(c+b) = s_b ∘ s_c, so X_(k_lo + τ·k_hi)(y) =
    /// X_(k_lo)(y)·X_(k_hi)(s_c(y)). The conversion therefore runs in three steps:
    /// 1. a Taylor expansion at y^τ + y (S. Gao and T. Mateer, "Additive fast Fourier
    ///    transforms over finite fields", IEEE TIT 56 (2010), §III): f = Σ_i g_i(y)·(y^τ+y)^i
    ///    with deg g_i < τ, one pass per level, g_i stored as row i of τ elements;
    /// 2. the same conversion in the variable s_c(y) on whole rows (row operations only, done
    ///    on column strips that fit in cache);
    /// 3. the conversion of each row in y, in cache.
    pub fn to_novel(&self, k: &Kernels, data: &mut [u64]) {
        assert_eq!(data.len(), self.len());
        let c = self.chunk_log;
        if self.log_len > c {
            taylor(k, data, self.log_len, c, true);
            rows_convert(k, data, &self.row_ops, self.log_len - c, c, true);
        }
        data.par_chunks_mut(1 << c).for_each(|chunk| {
            for op in &self.chunk_ops {
                apply_op(k, chunk, op);
            }
        });
    }

    /// Novel → monomial basis, in place (inverse of [`Transform::to_novel`]).
    pub fn from_novel(&self, k: &Kernels, data: &mut [u64]) {
        assert_eq!(data.len(), self.len());
        let c = self.chunk_log;
        data.par_chunks_mut(1 << c).for_each(|chunk| {
            for op in self.chunk_ops.iter().rev() {
                apply_op(k, chunk, op);
            }
        });
        if self.log_len > c {
            rows_convert(k, data, &self.row_ops, self.log_len - c, c, false);
            taylor(k, data, self.log_len, c, false);
        }
    }
}

/// One layer `i` above the chunk: butterflies between the halves of every block of 2^(i+1).
fn top_radix2(k: &Kernels, data: &mut [u64], i: u32, forward: bool) {
    let basis = CantorBasis::get();
    let h = 1usize << i;
    data.par_chunks_mut(2 * h)
        .enumerate()
        .for_each(|(b, block)| {
            let c = basis.tau(b as u64);
            let (lo, hi) = block.split_at_mut(h);
            lo.par_chunks_mut(PAR_GRAIN)
                .zip(hi.par_chunks_mut(PAR_GRAIN))
                .for_each(|(l, h)| {
                    if forward {
                        k.afft_butterfly_forward(l, h, c)
                    } else {
                        k.afft_butterfly_inverse(l, h, c)
                    }
                });
        });
}

/// Layers `i` and `i − 1` together: on every block of 2^(i+1) with quarters Q0..Q3, layer i
/// pairs (Q0, Q2) and (Q1, Q3) with τ(b), layer i − 1 pairs (Q0, Q1) with τ(2b) and (Q2, Q3)
/// with τ(2b + 1); both run on one segment of each quarter while it is in cache.
fn top_radix4(k: &Kernels, data: &mut [u64], i: u32, forward: bool) {
    let basis = CantorBasis::get();
    let q = 1usize << (i - 1);
    let seg = PAR_GRAIN.min(q) / 4;
    let seg = seg.max(1);
    data.par_chunks_mut(4 * q)
        .enumerate()
        .for_each(|(b, block)| {
            let c1 = basis.tau(b as u64);
            let c0a = basis.tau(2 * b as u64);
            let c0b = basis.tau(2 * b as u64 + 1);
            let (q01, q23) = block.split_at_mut(2 * q);
            let (q0, q1) = q01.split_at_mut(q);
            let (q2, q3) = q23.split_at_mut(q);
            q0.par_chunks_mut(seg)
                .zip(q1.par_chunks_mut(seg))
                .zip(q2.par_chunks_mut(seg).zip(q3.par_chunks_mut(seg)))
                .for_each(|((a0, a1), (a2, a3))| {
                    if forward {
                        k.afft_butterfly_forward(a0, a2, c1);
                        k.afft_butterfly_forward(a1, a3, c1);
                        k.afft_butterfly_forward(a0, a1, c0a);
                        k.afft_butterfly_forward(a2, a3, c0b);
                    } else {
                        k.afft_butterfly_inverse(a0, a1, c0a);
                        k.afft_butterfly_inverse(a2, a3, c0b);
                        k.afft_butterfly_inverse(a0, a2, c1);
                        k.afft_butterfly_inverse(a1, a3, c1);
                    }
                });
        });
}

/// `dst ^= src` on both cores.
fn par_xor(k: &Kernels, dst: &mut [u64], src: &[u64]) {
    dst.par_chunks_mut(PAR_GRAIN)
        .zip(src.par_chunks(PAR_GRAIN))
        .for_each(|(d, s)| k.xor_slice(d, s));
}

/// Taylor expansion at y^τ + y (τ = 2^c) of a polynomial of 2^log coefficients, in place, or
/// its inverse. For a block of L = τ·2^(k+1) coefficients f = f0 + y^(τ2^k)(f1 +
/// y^((τ−1)2^k)·f2) (|f0| = τ2^k, |f1| = (τ−1)2^k, |f2| = 2^k), (y^τ + y)^(2^k) = y^(τ2^k) +
/// y^(2^k) gives f = g0 + (y^τ + y)^(2^k)·g1 with h = f1 + f2, g0 = f0 + y^(2^k)·h and
/// g1 = h + y^((τ−1)2^k)·f2; then both halves recurse.
fn taylor(k: &Kernels, data: &mut [u64], log: u32, c: u32, forward: bool) {
    let tau = 1usize << c;
    let levels: Vec<u32> = if forward {
        (c + 1..=log).rev().collect()
    } else {
        (c + 1..=log).collect()
    };
    for u in levels {
        let len = 1usize << u;
        let kk = 1usize << (u - c - 1); // 2^k
        for block in data.chunks_exact_mut(len) {
            let half = tau * kk;
            let (low, high) = block.split_at_mut(half);
            // high = [f1 ((τ−1)·2^k) | f2 (2^k)], low = f0.
            let (f1, f2) = high.split_at_mut(half - kk);
            if forward {
                k.xor_slice(&mut f1[..kk], f2);
                par_xor(k, &mut low[kk..], f1);
            } else {
                par_xor(k, &mut low[kk..], f1);
                k.xor_slice(&mut f1[..kk], f2);
            }
        }
    }
}

/// One step of a basis conversion: in each of `reps` blocks of `stride` elements, XOR the
/// `len` elements at `src` into the `len` elements at `dst` (`dst + len ≤ src`). Every step
/// is an involution, so a conversion is undone by replaying its steps backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct XorOp {
    dst: usize,
    src: usize,
    len: usize,
    reps: usize,
    stride: usize,
}

/// The steps of the monomial → novel conversion of 2^log units of `unit` elements, repeated
/// on `reps` consecutive blocks. For log ≥ 3 with c the largest power of two below log:
/// a Taylor expansion at y^(2^c) + y (see [`taylor`]), the conversion of the 2^(log−c) rows
/// (units of 2^c·unit elements) and the conversion of every row — the recursion of
/// [`Transform::to_novel`] applied all the way down. It costs W(log) XORs per element with
/// W(16) = 16, against 32.5 for plain division by every s_i.
fn conversion_ops(log: u32, unit: usize, reps: usize, out: &mut Vec<XorOp>) {
    let block = unit << log;
    match log {
        0 | 1 => {} // X_0 = 1, X_1 = y: already the monomial basis
        2 => {
            // Divide by s_1 = y² + y: f[2] ^= f[3], then f[1] ^= f[2].
            out.push(XorOp {
                dst: 2 * unit,
                src: 3 * unit,
                len: unit,
                reps,
                stride: block,
            });
            out.push(XorOp {
                dst: unit,
                src: 2 * unit,
                len: unit,
                reps,
                stride: block,
            });
        }
        _ => {
            let c = 1u32 << (31 - (log - 1).leading_zeros()); // largest power of two < log
            taylor_ops(log, c, unit, reps, out);
            conversion_ops(log - c, unit << c, reps, out);
            conversion_ops(c, unit, reps << (log - c), out);
        }
    }
}

/// The steps of the Taylor expansion at y^τ + y (τ = 2^c) of 2^log units; see [`taylor`].
fn taylor_ops(log: u32, c: u32, unit: usize, reps: usize, out: &mut Vec<XorOp>) {
    let tau = 1usize << c;
    for u in (c + 1..=log).rev() {
        let kk = 1usize << (u - c - 1);
        let half = tau * kk;
        let blocks = reps << (log - u);
        let stride = unit << u;
        // f1[..2^k] ^= f2, then f0[2^k..] ^= f1.
        out.push(XorOp {
            dst: half * unit,
            src: (2 * half - kk) * unit,
            len: kk * unit,
            reps: blocks,
            stride,
        });
        out.push(XorOp {
            dst: kk * unit,
            src: half * unit,
            len: (half - kk) * unit,
            reps: blocks,
            stride,
        });
    }
}

/// Apply one step to contiguous data.
#[inline]
fn apply_op(k: &Kernels, data: &mut [u64], op: &XorOp) {
    debug_assert!(op.dst + op.len <= op.src && op.src + op.len <= op.stride);
    for block in data.chunks_exact_mut(op.stride).take(op.reps) {
        let (lo, hi) = block.split_at_mut(op.src);
        let (d, s) = (&mut lo[op.dst..op.dst + op.len], &hi[..op.len]);
        if op.len >= 16 {
            k.xor_slice(d, s);
        } else {
            for (x, &y) in d.iter_mut().zip(s) {
                *x ^= y;
            }
        }
    }
}

/// The conversion of 2^rows_log rows of 2^row_log elements, each row one coefficient (the
/// steps of `ops`, forwards or backwards): only row operations, so it runs on column strips
/// of all rows that fit in cache, in parallel.
fn rows_convert(
    k: &Kernels,
    data: &mut [u64],
    ops: &[XorOp],
    rows_log: u32,
    row_log: u32,
    forward: bool,
) {
    let rows = 1usize << rows_log;
    let row_len = 1usize << row_log;
    // A strip of all rows should stay within ~512 KiB.
    let width = ((1usize << 16) / rows).clamp(64.min(row_len), row_len);
    let strips = row_len / width;
    let mut cells: Vec<Vec<&mut [u64]>> = (0..strips).map(|_| Vec::with_capacity(rows)).collect();
    for row in data.chunks_exact_mut(row_len) {
        for (s, piece) in row.chunks_exact_mut(width).enumerate() {
            cells[s].push(piece);
        }
    }
    cells.par_iter_mut().for_each(|strip| {
        let mut run = |op: &XorOp| {
            for r in 0..op.reps {
                let base = r * op.stride;
                for u in 0..op.len {
                    let (lo, hi) = strip.split_at_mut(base + op.src + u);
                    k.xor_slice(lo[base + op.dst + u], hi[0]);
                }
            }
        };
        if forward {
            ops.iter().for_each(&mut run);
        } else {
            ops.iter().rev().for_each(&mut run);
        }
    });
}

/// Reference: evaluate a polynomial given in the novel basis at a point (O(2^ℓ·ℓ)).
pub fn eval_novel_naive(coeffs: &[u64], x: u64) -> u64 {
    let log = coeffs.len().trailing_zeros();
    // s_i(x) for i < log, from s_(i+1) = s_i² + s_i.
    let mut s = Vec::with_capacity(log as usize);
    let mut v = x;
    for _ in 0..log {
        s.push(v);
        v = gf64_mul(v, v) ^ v;
    }
    let mut acc = 0;
    for (kk, &c) in coeffs.iter().enumerate() {
        let mut xk = 1u64;
        for (i, &si) in s.iter().enumerate() {
            if kk >> i & 1 == 1 {
                xk = gf64_mul(xk, si);
            }
        }
        acc ^= gf64_mul(c, xk);
    }
    acc
}

/// Reference: evaluate a polynomial in the monomial basis at a point (Horner).
pub fn eval_monomial_naive(coeffs: &[u64], x: u64) -> u64 {
    coeffs.iter().rev().fold(0, |acc, &c| gf64_mul(acc, x) ^ c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngExt, SeedableRng};

    #[test]
    fn cantor_basis_relations() {
        let b = CantorBasis::get();
        assert_eq!(b.beta(0), 1);
        for i in 1..64 {
            let x = b.beta(i);
            assert_eq!(gf64_mul(x, x) ^ x, b.beta(i - 1), "β_{i}");
        }
        // Linear independence: Gaussian elimination on the 64 vectors.
        let mut rows: Vec<u64> = (0..64).map(|i| b.beta(i)).collect();
        let mut rank = 0;
        for bit in 0..64 {
            if let Some(p) = (rank..64).find(|&r| rows[r] >> bit & 1 == 1) {
                rows.swap(rank, p);
                for r in 0..64 {
                    if r != rank && rows[r] >> bit & 1 == 1 {
                        rows[r] ^= rows[rank];
                    }
                }
                rank += 1;
            }
        }
        assert_eq!(rank, 64);
        // s_i(β_j) = β_(j−i) with s_i computed as a product over V_i, for small i.
        for i in 0..4usize {
            for j in i..8 {
                let mut prod = 1u64;
                for v in 0..1u64 << i {
                    prod = gf64_mul(prod, b.beta(j) ^ b.point(v));
                }
                assert_eq!(prod, b.beta(j - i), "s_{i}(β_{j})");
            }
        }
    }

    #[test]
    fn lower_exponents_are_the_binary_terms_of_s_i() {
        assert!(lower_exponents(0).is_empty());
        assert_eq!(lower_exponents(1), vec![1]);
        assert_eq!(lower_exponents(3), vec![4, 2, 1]);
        assert_eq!(lower_exponents(5), vec![16, 2, 1]);
        // s_i(x) = Σ_(j ⊆ i) x^(2^j) vanishes on V_i.
        let b = CantorBasis::get();
        for i in 0..6u32 {
            let mut exps = lower_exponents(i);
            exps.push(1 << i);
            for v in 0..1u64 << i {
                let x = b.point(v);
                let val = exps.iter().fold(0u64, |acc, &e| {
                    // x^e by repeated squaring (e is a power of two).
                    let mut p = x;
                    let mut ee = e;
                    while ee > 1 {
                        p = gf64_mul(p, p);
                        ee >>= 1;
                    }
                    acc ^ p
                });
                assert_eq!(val, 0, "s_{i} at point {v}");
            }
        }
    }

    fn random_vec(rng: &mut impl Rng, len: usize) -> Vec<u64> {
        (0..len).map(|_| rng.random()).collect()
    }

    #[test]
    fn forward_transform_evaluates_the_novel_basis_polynomial() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let basis = CantorBasis::get();
        for k in Kernels::available() {
            for (log, chunk) in [
                (1, 16),
                (2, 16),
                (3, 16),
                (5, 16),
                (7, 16),
                (7, 4),
                (9, 2),
                (10, 4),
            ] {
                let plan = Transform::with_chunk_log(log, chunk);
                let coeffs = random_vec(&mut rng, 1 << log);
                let mut data = coeffs.clone();
                plan.forward(&k, &mut data);
                for (v, &val) in data.iter().enumerate() {
                    let x = basis.point(v as u64);
                    assert_eq!(val, eval_novel_naive(&coeffs, x), "{k:?} 2^{log} point {v}");
                }
                plan.inverse(&k, &mut data);
                assert_eq!(data, coeffs, "{k:?} inverse 2^{log}");
            }
        }
    }

    #[test]
    fn basis_conversion_preserves_values() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let k = Kernels::detect();
        for (log, chunk) in
            (1..=9u32)
                .map(|l| (l, 16))
                .chain([(8, 2), (10, 4), (11, 4), (13, 4), (12, 8)])
        {
            let plan = Transform::with_chunk_log(log, chunk);
            let mono = random_vec(&mut rng, 1 << log);
            let mut novel = mono.clone();
            plan.to_novel(&k, &mut novel);
            for _ in 0..6 {
                let x: u64 = rng.random();
                assert_eq!(
                    eval_novel_naive(&novel, x),
                    eval_monomial_naive(&mono, x),
                    "2^{log}"
                );
            }
            plan.from_novel(&k, &mut novel);
            assert_eq!(novel, mono, "round trip 2^{log}");
        }
    }
}
