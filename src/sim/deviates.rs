//! Random deviates shared by the simulators (all from a seeded ChaCha8 stream, so runs are
//! reproducible).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A uniform deviate in [0, 1) with 53 random bits.
#[inline]
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal deviate (Box–Muller, cosine branch).
#[inline]
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson(λ) deviate: inversion of the CDF for λ ≤ 30, the normal approximation above
/// (the simulators use means of a few photons, Kak's analysis up to thousands).
pub fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda > 30.0 {
        return (lambda + normal(rng) * lambda.sqrt()).round().max(0.0) as u32;
    }
    let (mut k, mut p, u) = (0u32, (-lambda).exp(), unit(rng));
    let mut cdf = p;
    while u > cdf && k < 1000 {
        k += 1;
        p *= lambda / f64::from(k);
        cdf += p;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn poisson_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for lambda in [0.05, 0.5, 3.0, 100.0] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n)
                .map(|_| f64::from(poisson(&mut rng, lambda)))
                .collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean / lambda - 1.0).abs() < 0.02,
                "λ={lambda}: mean {mean}"
            );
            assert!((var / lambda - 1.0).abs() < 0.05, "λ={lambda}: var {var}");
        }
    }
}
