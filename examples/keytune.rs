use qkd_distill::parameter_estimation::finite_key::*;
use qkd_distill::sim::link::*;
fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let n = args.first().copied().unwrap_or(1e8);
    let mut p = LinkParams::default();
    if args.len() > 1 {
        p.decoy.prob_key_basis = args[1];
        p.bob_prob_key_basis = args[1];
    }
    if args.len() > 4 {
        p.decoy.probabilities = [args[2], args[3], args[4]];
    }
    if args.len() > 6 {
        p.decoy.intensities = [args[5], args[6], 0.0002];
    }
    let e = expectation(&p);
    // per-class expected counts
    let d = &p.decoy;
    let mut c = DecoyCounts::default();
    for k in 0..3 {
        // sifted per pulse of class k: use gain proportion approx from expectation via qber arrays? recompute
        let mut pk = p.clone();
        pk.decoy.probabilities = [0.0; 3];
        pk.decoy.probabilities[k] = 1.0;
        let ek = expectation(&pk);
        c.n_key[k] = (n * d.probabilities[k] * ek.sifted_key_per_pulse) as u64;
        c.n_test[k] = (n * d.probabilities[k] * ek.sifted_test_per_pulse) as u64;
        c.m_test[k] = (c.n_test[k] as f64 * ek.qber_test[k]) as u64;
    }
    let b = bounds(d, &c, 1e-10);
    let nk = c.key_total() as f64;
    let leak = 1.16 * nk * binary_entropy(e.qber_key_overall);
    let l = secret_length(&b, leak as u64, 64, 0, 1e-15);
    println!(
        "counts {:?}\nbounds {:?}\nleak {leak:.0} key {l} per-sifted {:.3} per-pulse {:.2e} Mbit/s@clock {:.2}",
        c,
        b,
        l as f64 / nk,
        l as f64 / n,
        l as f64 / n * 1e3
    );
}
