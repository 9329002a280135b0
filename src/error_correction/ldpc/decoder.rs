//! Decoders: the exact sum-product reference (floating point, flooding schedule) and the
//! entry point to the fast layered 8-bit min-sum kernel.
//!
//! Syndrome decoding (Slepian–Wolf form): Bob decodes Alice's word x from per-bit log-likelihood
//! ratios L_i = ln P(x_i = 0)/P(x_i = 1) (from his own bits and the channel error rate; exact
//! for shortened bits, zero for punctured ones) under the constraint H·x = s, Alice's syndrome.
//! A check with target parity 1 flips the sign of its messages.

use super::code::ParityCheckMatrix;
use crate::bits::BitVec;

/// Exact sum-product (belief propagation) with the tanh rule, flooding schedule
/// (Gallager 1963; Kschischang, Frey, Loeliger, IEEE TIT 47 (2001)). Returns the hard decisions,
/// the iterations run, and whether they satisfy the syndrome.
#[allow(clippy::needless_range_loop)]
pub fn sum_product(
    h: &ParityCheckMatrix,
    llr: &[f64],
    syndrome: &BitVec,
    max_iter: u32,
) -> (BitVec, u32, bool) {
    let (n, m) = (h.n(), h.m());
    assert_eq!(llr.len(), n);
    assert_eq!(syndrome.len(), m);
    // Messages indexed by edge in row order; `edge_of_col[c]` lists the edge ids of column c.
    let mut row_start = Vec::with_capacity(m + 1);
    row_start.push(0usize);
    for r in 0..m {
        row_start.push(row_start[r] + h.row(r).len());
    }
    let mut col_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for r in 0..m {
        for (k, &c) in h.row(r).iter().enumerate() {
            col_edges[c as usize].push(row_start[r] + k);
        }
    }
    let edges = row_start[m];
    let mut v2c = vec![0f64; edges];
    let mut c2v = vec![0f64; edges];
    for (c, es) in col_edges.iter().enumerate() {
        for &e in es {
            v2c[e] = llr[c];
        }
    }
    let mut x = BitVec::zeros(n);
    let decide = |c2v: &[f64], x: &mut BitVec| {
        for (c, es) in col_edges.iter().enumerate() {
            let total = llr[c] + es.iter().map(|&e| c2v[e]).sum::<f64>();
            x.set(c, total < 0.0);
        }
    };
    let satisfied = |x: &BitVec| h.syndrome(x) == *syndrome;
    decide(&c2v, &mut x);
    if satisfied(&x) {
        return (x, 0, true);
    }
    for it in 1..=max_iter {
        // Check nodes.
        for r in 0..m {
            let es = row_start[r]..row_start[r + 1];
            let t: Vec<f64> = es.clone().map(|e| (v2c[e] / 2.0).tanh()).collect();
            let sign = if syndrome.get(r) { -1.0 } else { 1.0 };
            for (k, e) in es.enumerate() {
                let mut p = sign;
                for (j, &tj) in t.iter().enumerate() {
                    if j != k {
                        p *= tj;
                    }
                }
                let p = p.clamp(-0.999_999_999_999, 0.999_999_999_999);
                c2v[e] = 2.0 * p.atanh();
            }
        }
        // Variable nodes.
        for (c, es) in col_edges.iter().enumerate() {
            let total = llr[c] + es.iter().map(|&e| c2v[e]).sum::<f64>();
            for &e in es {
                v2c[e] = total - c2v[e];
            }
        }
        decide(&c2v, &mut x);
        if satisfied(&x) {
            return (x, it, true);
        }
    }
    (x, max_iter, false)
}

/// Channel LLR ln((1 − q)/q) of a bit observed through a BSC with error rate q.
pub fn channel_llr(q: f64) -> f64 {
    let q = q.clamp(1e-6, 0.5);
    ((1.0 - q) / q).ln()
}

/// 8-bit channel LLR magnitude: ln((1 − q)/q) in units of 1/`LLR_SCALE`, at least 1.
pub fn quantized_llr(q: f64) -> i8 {
    (channel_llr(q) * LLR_SCALE).round().clamp(1.0, 100.0) as i8
}

/// Fixed-point scale of the 8-bit LLRs.
pub const LLR_SCALE: f64 = 3.0;

/// LLR of a bit whose value both parties know (shortened).
pub const KNOWN_LLR: i8 = 127;

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimum-weight solutions of H·e = s by enumeration (tiny n).
    fn ml_errors(h: &ParityCheckMatrix, s: &BitVec) -> Vec<BitVec> {
        let n = h.n();
        let mut best = usize::MAX;
        let mut out = vec![];
        for bits in 0u32..(1 << n) {
            let e = BitVec::from_words(vec![u64::from(bits)], n);
            if h.syndrome(&e) != *s {
                continue;
            }
            let w = bits.count_ones() as usize;
            if w < best {
                best = w;
                out.clear();
            }
            if w == best {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn sum_product_finds_the_ml_solution_on_a_tiny_code() {
        // A (16, 8) code, column weight 3, girth 6 (rows listed by columns).
        let rows: Vec<Vec<u32>> = vec![
            vec![0, 1, 2, 3, 8, 12],
            vec![4, 5, 6, 7, 9, 13],
            vec![0, 4, 10, 11, 14],
            vec![1, 5, 8, 10, 15],
            vec![2, 6, 9, 11, 12],
            vec![3, 7, 13, 14, 15],
            vec![0, 5, 9, 12, 15],
            vec![2, 7, 8, 11, 13, 14],
        ];
        let h = ParityCheckMatrix::from_rows(16, &rows).unwrap();
        let q = 0.05;
        let x = BitVec::from_words(vec![0b1011_0010_0110_1101], 16);
        let s = h.syndrome(&x);
        let mut checked = 0;
        for pattern in 0u32..(1 << 16) {
            if pattern.count_ones() > 2 {
                continue;
            }
            let e = BitVec::from_words(vec![u64::from(pattern)], 16);
            let mut y = x.clone();
            y.xor_assign(&e);
            let llr: Vec<f64> = (0..16)
                .map(|i| {
                    if y.get(i) {
                        -channel_llr(q)
                    } else {
                        channel_llr(q)
                    }
                })
                .collect();
            let (xh, _, ok) = sum_product(&h, &llr, &s, 50);
            if ok {
                assert_eq!(
                    h.syndrome(&xh),
                    s,
                    "converged output must satisfy the syndrome"
                );
            }
            // Compare with brute-force ML on the error pattern.
            let mut s_err = s.clone();
            s_err.xor_assign(&h.syndrome(&y));
            let ml = ml_errors(&h, &s_err);
            if ml.len() == 1 {
                let mut e_hat = xh.clone();
                e_hat.xor_assign(&y);
                if pattern.count_ones() <= 1 {
                    assert!(
                        ok && e_hat == ml[0],
                        "pattern {pattern:#x}: BP did not find the unique ML solution"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 16);
    }
}
