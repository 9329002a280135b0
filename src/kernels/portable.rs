//! Reference kernels: plain Rust, no target features, obviously correct. They are the oracle the
//! SIMD paths are tested against, and the path used on CPUs without the extensions (aarch64 and
//! old x86-64).

/// Append the bits of `src` selected by `mask` to `dst` from bit `pos` (software `pext`).
pub fn compact(src: &[u64], mask: &[u64], dst: &mut [u64], mut pos: usize) -> usize {
    for (&w, &m) in src.iter().zip(mask) {
        let mut m = m;
        while m != 0 {
            let t = m.trailing_zeros();
            dst[pos / 64] |= ((w >> t) & 1) << (pos % 64);
            pos += 1;
            m &= m - 1;
        }
    }
    pos
}

/// Deposit consecutive bits of `src` (from bit 0) into the positions where `mask` is set
/// (software `pdep`, the inverse of [`compact`]); `dst` is overwritten word by word.
pub fn expand(src: &[u64], mask: &[u64], dst: &mut [u64]) {
    let mut pos = 0usize;
    for (d, &m) in dst.iter_mut().zip(mask) {
        let mut out = 0u64;
        let mut mm = m;
        while mm != 0 {
            let t = mm.trailing_zeros();
            out |= ((src[pos / 64] >> (pos % 64)) & 1) << t;
            pos += 1;
            mm &= mm - 1;
        }
        *d = out;
    }
}

/// Number of set bits.
pub fn popcount(words: &[u64]) -> u64 {
    words.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Number of positions where `a` and `b` differ.
pub fn xor_popcount(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from((x ^ y).count_ones()))
        .sum()
}

/// Number of positions set in both `a` and `b`.
pub fn and_popcount(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from((x & y).count_ones()))
        .sum()
}

/// Carry-less (GF(2)\[z\]) product of two 64-bit polynomials: `(low, high)` words.
pub fn clmul64(a: u64, b: u64) -> (u64, u64) {
    let (mut lo, mut hi) = (0u64, 0u64);
    let mut b = b;
    while b != 0 {
        let i = b.trailing_zeros();
        lo ^= a << i;
        if i > 0 {
            hi ^= a >> (64 - i);
        }
        b &= b - 1;
    }
    (lo, hi)
}

/// Reduce a 128-bit polynomial modulo the GF(2^64) field polynomial
/// `z^64 + z^4 + z^3 + z + 1` (a primitive trinomial-free pentanomial, the one used by
/// e.g. the CRC-64/ISO "ECMA" family of GF(2^64) arithmetic).
#[inline]
pub fn reduce_gf64(lo: u64, hi: u64) -> u64 {
    // hi·z^64 ≡ hi·(z^4 + z^3 + z + 1); the bits pushed past z^63 fold once more.
    let t = hi ^ (hi << 1) ^ (hi << 3) ^ (hi << 4);
    let o = (hi >> 63) ^ (hi >> 61) ^ (hi >> 60);
    lo ^ t ^ o ^ (o << 1) ^ (o << 3) ^ (o << 4)
}

/// Multiplication in GF(2^64) = GF(2)\[z\]/(z^64 + z^4 + z^3 + z + 1).
#[inline]
pub fn gf64_mul(a: u64, b: u64) -> u64 {
    let (lo, hi) = clmul64(a, b);
    reduce_gf64(lo, hi)
}

/// Horner evaluation `acc ← (acc ⊕ w)·key` over the words, in GF(2^64).
///
/// With the words of a message followed by its length, the result is the polynomial hash of
/// Wegman and Carter (J. Comput. Syst. Sci. 22 (1981)) / Bierbrauer et al. (CRYPTO '93): two
/// different messages of `d` words collide for at most `d + 1` keys out of 2^64.
pub fn poly_hash_gf64(words: &[u64], key: u64, mut acc: u64) -> u64 {
    for &w in words {
        acc = gf64_mul(acc ^ w, key);
    }
    acc
}

/// Words `[lo_word, lo_word + out.len())` of the carry-less product `a·b`, schoolbook.
pub fn clmul_window(a: &[u64], b: &[u64], out: &mut [u64], lo_word: usize) {
    out.fill(0);
    let hi_word = lo_word + out.len();
    for (i, &x) in a.iter().enumerate() {
        if x == 0 {
            continue;
        }
        // Product word index of a[i]·b[j] is i + j (low half) and i + j + 1 (high half).
        let j_lo = lo_word.saturating_sub(i + 1);
        let j_hi = hi_word.saturating_sub(i).min(b.len());
        for (j, &y) in b.iter().enumerate().take(j_hi).skip(j_lo) {
            let (l, h) = clmul64(x, y);
            let k = i + j;
            if k >= lo_word && k < hi_word {
                out[k - lo_word] ^= l;
            }
            if k + 1 >= lo_word && k + 1 < hi_word {
                out[k + 1 - lo_word] ^= h;
            }
        }
    }
}
