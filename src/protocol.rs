//! Protocol vocabulary shared by the simulator, the file formats and the stages: bases, symbols
//! and the parameters of decoy-state BB84.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};

/// A BB84 measurement or preparation basis.
///
/// Encoded as one bit: 0 = Z (rectilinear, H/V), 1 = X (diagonal, D/A). The key is drawn from
/// the Z basis; the X basis is the test basis that bounds the phase error. (Lim et al. 2014 call
/// the key basis "X"; their formulas are applied with the roles named, not the letters.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Basis {
    /// Rectilinear basis (bit 0): the key basis.
    Z,
    /// Diagonal basis (bit 1): the test basis.
    X,
}

impl Basis {
    /// The basis encoded by `bit`.
    pub fn from_bit(bit: bool) -> Basis {
        if bit { Basis::X } else { Basis::Z }
    }

    /// The bit encoding this basis.
    pub fn bit(self) -> bool {
        matches!(self, Basis::X)
    }
}

/// Number of intensity classes of the decoy protocol (signal, decoy, weak decoy/vacuum).
pub const INTENSITY_CLASSES: usize = 3;

/// Parameters of three-intensity decoy-state BB84 with biased basis choice (Lim, Curty,
/// Walenta, Xu, Zbinden, PRA 89, 022307 (2014), §II): intensities μ₁ > μ₂ + μ₃, μ₂ > μ₃ ≥ 0,
/// chosen with probabilities p₁, p₂, p₃; Alice prepares in the key basis with probability
/// `prob_key_basis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoyParams {
    /// Mean photon numbers [μ₁ (signal), μ₂ (decoy), μ₃ (weak decoy)].
    pub intensities: [f64; INTENSITY_CLASSES],
    /// Probabilities of choosing each intensity.
    pub probabilities: [f64; INTENSITY_CLASSES],
    /// Probability that Alice prepares in the key basis Z.
    pub prob_key_basis: f64,
}

impl Default for DecoyParams {
    fn default() -> Self {
        DecoyParams {
            intensities: [0.5, 0.2, 0.0002],
            probabilities: [0.4, 0.4, 0.2],
            prob_key_basis: 0.85,
        }
    }
}

impl DecoyParams {
    /// Check the conditions the Lim et al. bounds need.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let [m1, m2, m3] = self.intensities;
        let ordered = m3 >= 0.0 && m2 > m3 && m1 > m2 + m3 && m1.is_finite();
        if !ordered {
            return Err(ConfigError::invalid(
                "intensities",
                format!(
                    "need μ1 > μ2 + μ3 and μ2 > μ3 ≥ 0 (Lim et al. 2014), got [{m1}, {m2}, {m3}]"
                ),
            ));
        }
        let sum: f64 = self.probabilities.iter().sum();
        if self.probabilities.iter().any(|&p| !(p > 0.0 && p < 1.0)) || (sum - 1.0).abs() > 1e-9 {
            return Err(ConfigError::invalid(
                "intensity probabilities",
                format!(
                    "each must be in (0, 1) and they must sum to 1, got {:?}",
                    self.probabilities
                ),
            ));
        }
        if !(self.prob_key_basis > 0.0 && self.prob_key_basis < 1.0) {
            return Err(ConfigError::invalid(
                "basis probability",
                format!("must be in (0, 1), got {}", self.prob_key_basis),
            ));
        }
        Ok(())
    }
}

/// The two parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The sender; her key is the reference.
    Alice,
    /// The receiver; corrects his key towards Alice's.
    Bob,
}

impl Role {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Alice => "alice",
            Role::Bob => "bob",
        }
    }
}
