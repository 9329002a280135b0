//! The Cascade family as data: per-pass top-level block sizes and options.
//!
//! * `original`: Brassard, Salvail, "Secret-key reconciliation by public discussion",
//!   EUROCRYPT '93 (LNCS 765): 4 passes, k₁ = ⌈0.73/Q⌉, k_{i+1} = 2k_i (the parametrisation of
//!   Martinez-Mateo et al. 2015 §3 and of cascade-cpp).
//! * `biconf`: the BICONF variant (Brassard–Salvail's "BICONF", as evaluated by Martinez-Mateo et
//!   al. 2015 as "mod. (1)"): 2 passes with k₁ = ⌈0.92/Q⌉, k₂ = 3k₁, then BICONF rounds (the
//!   parity of a random half of the frame, bisected on mismatch, with cascading) until 10
//!   consecutive rounds find no error.
//! * `yan`: Yan, Ren, Peng, Fang, Shi, "Information reconciliation protocol in quantum key
//!   distribution system", ICNC 2008 ("opt. (2)"): k₁ = ⌈0.80/Q⌉, k₂ = 5k₁, then n/2, 10 passes.
//! * `opt3`, `opt4`, `opt7`, `opt8`: Martinez-Mateo, Pacher, Peev, Ciurana, Martin,
//!   "Demystifying the information reconciliation protocol Cascade", QIC 15, 453 (2015),
//!   optimisations (3): k₁ = ⌈1/Q⌉, k₂ = 2k₁, then n/2, 16 passes; (4) = (3) reusing every
//!   sub-block parity already disclosed; (7) = (4) with k₁ = 2^⌈log₂(1/Q)⌉, k₂ = 4k₁, then n/2,
//!   14 passes; (8) = (7) with α = log₂(1/Q) − 0.5, k₁ = 2^⌈α⌉, k₂ = 2^⌈(α+12)/2⌉, k₃ = 4096, then
//!   n/2 (14 passes; the paper uses n = 2^14).
//!
//! Not built: opt. (5) (opt. (4) without shuffles) and opt. (6) (discarding singleton blocks),
//! which the paper shows are dominated by (4) and (7).

use serde::{Deserialize, Serialize};

/// A member of the Cascade family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CascadeVariant {
    /// Brassard–Salvail original, 4 passes.
    #[default]
    Original,
    /// Two passes, then BICONF.
    Biconf,
    /// Yan et al. 2008.
    Yan,
    /// Martinez-Mateo et al. (3).
    Opt3,
    /// (3) with sub-block parity reuse.
    Opt4,
    /// (4) with power-of-two blocks.
    Opt7,
    /// (7) with the tuned three-size schedule.
    Opt8,
}

/// What a variant does on frames of n bits at error rate Q.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Top-level block size of each regular pass (capped at n).
    pub block_sizes: Vec<usize>,
    /// BICONF rounds: stop after this many consecutive clean rounds (0: none).
    pub biconf_clean_rounds: u32,
    /// Reuse Alice's sub-block parities disclosed earlier instead of asking again.
    pub reuse: bool,
}

impl CascadeVariant {
    /// Every variant.
    pub const ALL: [CascadeVariant; 7] = [
        CascadeVariant::Original,
        CascadeVariant::Biconf,
        CascadeVariant::Yan,
        CascadeVariant::Opt3,
        CascadeVariant::Opt4,
        CascadeVariant::Opt7,
        CascadeVariant::Opt8,
    ];

    /// CLI name.
    pub fn name(self) -> &'static str {
        match self {
            CascadeVariant::Original => "original",
            CascadeVariant::Biconf => "biconf",
            CascadeVariant::Yan => "yan",
            CascadeVariant::Opt3 => "opt3",
            CascadeVariant::Opt4 => "opt4",
            CascadeVariant::Opt7 => "opt7",
            CascadeVariant::Opt8 => "opt8",
        }
    }

    /// Parse a CLI name.
    pub fn parse(s: &str) -> Option<CascadeVariant> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// The schedule for frames of `n` bits at error rate `q` (q is floored at 0.1 %).
    pub fn schedule(self, q: f64, n: usize) -> Schedule {
        let q = q.clamp(0.001, 0.5);
        let n = n.max(1);
        let ceil = |x: f64| x.ceil().max(1.0) as usize;
        let half = n.div_ceil(2);
        let (mut sizes, biconf, reuse) = match self {
            CascadeVariant::Original => {
                let k1 = ceil(0.73 / q);
                (vec![k1, 2 * k1, 4 * k1, 8 * k1], 0, false)
            }
            CascadeVariant::Biconf => {
                let k1 = ceil(0.92 / q);
                (vec![k1, 3 * k1], 10, false)
            }
            CascadeVariant::Yan => {
                let k1 = ceil(0.80 / q);
                let mut v = vec![k1, 5 * k1];
                v.resize(10, half);
                (v, 0, false)
            }
            CascadeVariant::Opt3 | CascadeVariant::Opt4 => {
                let k1 = ceil(1.0 / q);
                let mut v = vec![k1, 2 * k1];
                v.resize(16, half);
                (v, 0, self == CascadeVariant::Opt4)
            }
            CascadeVariant::Opt7 => {
                let k1 = 1usize << ((1.0 / q).log2().ceil() as u32);
                let mut v = vec![k1, 4 * k1];
                v.resize(14, half);
                (v, 0, true)
            }
            CascadeVariant::Opt8 => {
                let alpha = (1.0 / q).log2() - 0.5;
                let k1 = 1usize << (alpha.ceil().max(0.0) as u32);
                let k2 = 1usize << (((alpha + 12.0) / 2.0).ceil() as u32);
                let mut v = vec![k1, k2, 4096];
                v.resize(14, half);
                (v, 0, true)
            }
        };
        for k in &mut sizes {
            *k = (*k).clamp(1, n);
        }
        Schedule {
            block_sizes: sizes,
            biconf_clean_rounds: biconf,
            reuse,
        }
    }
}
