//! Layered normalised min-sum decoding of quasi-cyclic LDPC codes with Z = 64, on 8-bit
//! messages, with the Z rows of a base row processed as the 64 lanes of one vector
//! (intra-frame parallelism; the circulant shift is a lane rotation).
//!
//! Algorithm (row-layered schedule: Mansour & Shanbhag, IEEE TVLSI 11 (2003); normalised
//! min-sum: Chen & Fossorier, IEEE Trans. Commun. 50 (2002)), syndrome form: for check row j of
//! base row r with target parity s_j, and each variable v in the row,
//! `q_v = APP_v − R_jv` (saturating), then
//! `R_jv ← (−1)^(s_j ⊕ ⊕_{u≠v} sgn q_u) · α · max(min_{u≠v} |q_u| − β, 0)` with α = 1 − 2^−k
//! (normalised and offset min-sum combined, as the high check degrees of rate-0.8+ codes need:
//! plain min-sum does not decode them at 2 % QBER where BP does), and `APP_v ← q_v + R_jv`. Magnitudes are capped at 127, so −128 never
//! enters a magnitude. Early termination: after every iteration the hard decisions
//! (sign bits, one u64 per column block) are checked against the syndrome with 64-bit rotations;
//! a decoding whose unsatisfied-check count stops improving is abandoned ([`StallGuard`]).
//!
//! [`nms_decode`] is the portable oracle; the AVX-512 (BW + VBMI) version in `x86_64.rs`
//! performs the same integer operations and is tested for bit-identical results.

/// Lifting size.
pub const Z: usize = 64;

/// The base structure of a QC code: per base row, its (column, shift) entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QcLayout {
    /// Base columns.
    pub nb: usize,
    /// Start of each base row in `cols`/`shifts` (length mb + 1).
    pub row_ptr: Vec<u32>,
    /// Base column of each entry.
    pub cols: Vec<u32>,
    /// Circulant shift of each entry (0..64).
    pub shifts: Vec<u8>,
}

impl QcLayout {
    /// Base rows.
    pub fn mb(&self) -> usize {
        self.row_ptr.len() - 1
    }
    /// Base entries.
    pub fn entries(&self) -> usize {
        self.cols.len()
    }
    /// Largest base-row degree.
    pub fn max_row_degree(&self) -> usize {
        self.row_ptr
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0)
    }
}

/// Caller-owned decoder memory, reusable across frames of the same code.
#[derive(Debug, Default, Clone)]
pub struct NmsScratch {
    /// A-posteriori LLRs, nb × 64.
    pub app: Vec<i8>,
    /// Check-to-variable messages, entries × 64.
    pub msg: Vec<i8>,
    /// Variable-to-check messages of the current row, max row degree × 64.
    pub tmp: Vec<i8>,
    /// Hard decisions, one word per column block (bit t = variable c·64 + t is 1).
    pub hard: Vec<u64>,
}

impl NmsScratch {
    /// Size the buffers for `layout` and load the channel LLRs.
    pub fn reset(&mut self, layout: &QcLayout, llr: &[i8]) {
        assert_eq!(llr.len(), layout.nb * Z, "one LLR per variable");
        self.app.clear();
        self.app.extend_from_slice(llr);
        self.msg.clear();
        self.msg.resize(layout.entries() * Z, 0);
        self.tmp.clear();
        self.tmp.resize(layout.max_row_degree() * Z, 0);
        self.hard.clear();
        self.hard.resize(layout.nb, 0);
    }
}

/// The check-node rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRule {
    /// Normalised offset min-sum (α = 1 − 2^−`alpha_shift`, offset β).
    MinSum,
    /// Sum-product in the φ domain with 8-bit tables (see [`SpaTables`]).
    Spa,
}

/// Decoder parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmsParams {
    /// Check-node rule.
    pub rule: CheckRule,
    /// Iteration limit.
    pub max_iterations: u32,
    /// Normalisation α = 1 − 2^−`alpha_shift` (2 → 0.75, 3 → 0.875; 8 or more → 1).
    pub alpha_shift: u32,
    /// Offset β subtracted from check-message magnitudes before normalisation (in LLR units of
    /// the fixed-point scale).
    pub offset: u8,
}

/// Fixed-point scale of message LLRs: one unit = 1/`LLR_UNITS` nat.
pub const LLR_UNITS: f64 = 3.0;
/// Fixed-point scale of the φ domain: one unit = 1/`PHI_UNITS`.
pub const PHI_UNITS: f64 = 128.0;

/// Tables of the sum-product check rule in the φ domain (Gallager 1963; the "φ-LUT" check node
/// of fixed-point BP decoders): |R_v| = φ(Σ_{u≠v} φ(|q_u|)) with φ(x) = −ln tanh(x/2), which is
/// its own inverse. `phi[a]` = PHI_UNITS·φ(a/LLR_UNITS) for message magnitudes a in 0..128,
/// `inv[y]` = LLR_UNITS·φ(y/PHI_UNITS) for φ sums y in 0..256, both rounded and saturated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaTables {
    /// Message magnitude → φ units.
    pub phi: [u8; 128],
    /// φ units → message magnitude.
    pub inv: [u8; 256],
}

fn phi(x: f64) -> f64 {
    -(x / 2.0).tanh().ln()
}

/// The tables (computed once).
pub fn spa_tables() -> &'static SpaTables {
    static T: std::sync::OnceLock<SpaTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = SpaTables {
            phi: [0; 128],
            inv: [0; 256],
        };
        for (a, v) in t.phi.iter_mut().enumerate() {
            let x = (a as f64).max(0.5) / LLR_UNITS;
            *v = (PHI_UNITS * phi(x)).round().min(255.0) as u8;
        }
        for (y, v) in t.inv.iter_mut().enumerate() {
            let x = (y as f64).max(0.5) / PHI_UNITS;
            *v = (LLR_UNITS * phi(x)).round().min(127.0) as u8;
        }
        t
    })
}

/// Outcome of one decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmsOutcome {
    /// Iterations run.
    pub iterations: u32,
    /// The hard decisions satisfy the syndrome.
    pub converged: bool,
}

/// Recompute the hard decisions from the APP; returns the number of unsatisfied checks.
pub fn hard_decisions(layout: &QcLayout, syndrome: &[u64], app: &[i8], hard: &mut [u64]) -> u32 {
    for (c, h) in hard.iter_mut().enumerate() {
        let mut w = 0u64;
        for (t, &a) in app[c * Z..(c + 1) * Z].iter().enumerate() {
            w |= u64::from(a < 0) << t;
        }
        *h = w;
    }
    unsatisfied_checks(layout, syndrome, hard)
}

/// True when every check row's parity of the hard decisions equals the syndrome.
#[inline]
pub fn parity_ok(layout: &QcLayout, syndrome: &[u64], hard: &[u64]) -> bool {
    unsatisfied_checks(layout, syndrome, hard) == 0
}

/// Number of check rows whose parity of the hard decisions differs from the syndrome.
#[inline]
pub fn unsatisfied_checks(layout: &QcLayout, syndrome: &[u64], hard: &[u64]) -> u32 {
    (0..layout.mb())
        .map(|r| {
            let (a, b) = (layout.row_ptr[r] as usize, layout.row_ptr[r + 1] as usize);
            let mut p = syndrome[r];
            for e in a..b {
                p ^= hard[layout.cols[e] as usize].rotate_right(u32::from(layout.shifts[e]));
            }
            p.count_ones()
        })
        .sum()
}

/// Stop a decoding whose unsatisfied-check count has not improved for this many iterations: it
/// will not converge, and blind retries need the time.
pub const STALL_ITERATIONS: u32 = 10;

/// Tracks the best unsatisfied-check count (the same rule in every implementation).
#[derive(Debug, Clone, Copy)]
pub struct StallGuard {
    best: u32,
    since: u32,
}

impl StallGuard {
    /// A fresh guard.
    pub fn new() -> Self {
        StallGuard {
            best: u32::MAX,
            since: 0,
        }
    }
    /// Record this iteration's count; true when decoding should stop.
    pub fn stalled(&mut self, unsatisfied: u32) -> bool {
        if unsatisfied < self.best {
            self.best = unsatisfied;
            self.since = 0;
        } else {
            self.since += 1;
        }
        self.since >= STALL_ITERATIONS
    }
}

impl Default for StallGuard {
    fn default() -> Self {
        Self::new()
    }
}

/// One row of the portable φ-domain sum-product rule.
#[allow(clippy::needless_range_loop)]
fn spa_row(layout: &QcLayout, syndrome: u64, a: usize, b: usize, s: &mut NmsScratch) {
    let tables = spa_tables();
    let mut sign = syndrome;
    let mut sum = [0u16; Z];
    for (j, e) in (a..b).enumerate() {
        let c = layout.cols[e] as usize;
        let sh = layout.shifts[e] as usize;
        for t in 0..Z {
            let q = s.app[c * Z + (t + sh) % Z].saturating_sub(s.msg[e * Z + t]);
            s.tmp[j * Z + t] = q;
            sign ^= u64::from(q < 0) << t;
            sum[t] =
                sum[t].saturating_add(u16::from(tables.phi[q.unsigned_abs().min(127) as usize]));
        }
    }
    for (j, e) in (a..b).enumerate() {
        let c = layout.cols[e] as usize;
        let sh = layout.shifts[e] as usize;
        for t in 0..Z {
            let q = s.tmp[j * Z + t];
            let own = u16::from(tables.phi[q.unsigned_abs().min(127) as usize]);
            let y = sum[t].saturating_sub(own).min(255);
            let mag = tables.inv[y as usize] as i8;
            let neg = ((sign >> t) & 1 == 1) ^ (q < 0);
            let r_new = if neg { -mag } else { mag };
            s.msg[e * Z + t] = r_new;
            s.app[c * Z + (t + sh) % Z] = q.saturating_add(r_new);
        }
    }
}

/// Portable layered NMS decoder. `syndrome[r]` bit t is the target parity of check r·64 + t.
/// Call [`NmsScratch::reset`] first; the result is in `scratch.hard` / `scratch.app`.
#[allow(clippy::needless_range_loop)]
pub fn nms_decode(
    layout: &QcLayout,
    syndrome: &[u64],
    params: NmsParams,
    s: &mut NmsScratch,
) -> NmsOutcome {
    let k = params.alpha_shift.min(8);
    if hard_decisions(layout, syndrome, &s.app, &mut s.hard) == 0 {
        return NmsOutcome {
            iterations: 0,
            converged: true,
        };
    }
    let mut guard = StallGuard::new();
    for it in 1..=params.max_iterations {
        for r in 0..layout.mb() {
            let (a, b) = (layout.row_ptr[r] as usize, layout.row_ptr[r + 1] as usize);
            if params.rule == CheckRule::Spa {
                spa_row(layout, syndrome[r], a, b, s);
                continue;
            }
            let mut sign = syndrome[r];
            let mut min1 = [127u8; Z];
            let mut min2 = [127u8; Z];
            let mut idx = [0u8; Z];
            for (j, e) in (a..b).enumerate() {
                let c = layout.cols[e] as usize;
                let sh = layout.shifts[e] as usize;
                let app = &s.app[c * Z..(c + 1) * Z];
                let msg = &s.msg[e * Z..(e + 1) * Z];
                let tmp = &mut s.tmp[j * Z..(j + 1) * Z];
                for t in 0..Z {
                    let q = app[(t + sh) % Z].saturating_sub(msg[t]);
                    tmp[t] = q;
                    sign ^= u64::from(q < 0) << t;
                    let aq = q.unsigned_abs().min(127);
                    if aq < min1[t] {
                        idx[t] = j as u8;
                    }
                    min2[t] = min2[t].min(min1[t].max(aq));
                    min1[t] = min1[t].min(aq);
                }
            }
            for t in 0..Z {
                let (a1, a2) = (
                    min1[t].saturating_sub(params.offset),
                    min2[t].saturating_sub(params.offset),
                );
                min1[t] = a1 - (a1 >> k);
                min2[t] = a2 - (a2 >> k);
            }
            for (j, e) in (a..b).enumerate() {
                let c = layout.cols[e] as usize;
                let sh = layout.shifts[e] as usize;
                for t in 0..Z {
                    let q = s.tmp[j * Z + t];
                    let mag = if idx[t] == j as u8 { min2[t] } else { min1[t] } as i8;
                    let neg = ((sign >> t) & 1 == 1) ^ (q < 0);
                    let r_new = if neg { -mag } else { mag };
                    s.msg[e * Z + t] = r_new;
                    s.app[c * Z + (t + sh) % Z] = q.saturating_add(r_new);
                }
            }
        }
        let unsatisfied = hard_decisions(layout, syndrome, &s.app, &mut s.hard);
        if unsatisfied == 0 {
            return NmsOutcome {
                iterations: it,
                converged: true,
            };
        }
        if guard.stalled(unsatisfied) {
            return NmsOutcome {
                iterations: it,
                converged: false,
            };
        }
    }
    NmsOutcome {
        iterations: params.max_iterations,
        converged: false,
    }
}
