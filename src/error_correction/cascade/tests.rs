use super::*;
use crate::classical::{ClassicalChannel, transport::in_memory};
use crate::kernels::Kernels;
use crate::ledger::LeakageLedger;
use rand::{RngExt, SeedableRng};

/// Run Cascade between two threads; returns Bob's corrected frames, outcomes and both ledgers.
pub(crate) fn run_cascade(
    alice: Vec<BitVec>,
    mut bob: Vec<BitVec>,
    qber: f64,
    seed: u64,
) -> (
    Vec<BitVec>,
    Vec<FrameOutcome>,
    LeakageLedger,
    LeakageLedger,
    EcStats,
) {
    let (ta, tb) = in_memory::pair();
    let k = Kernels::detect();
    let alice_thread = std::thread::spawn(move || {
        let mut ch = ClassicalChannel::new(Box::new(ta));
        let mut ledger = LeakageLedger::default();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let k = Kernels::detect();
        let mut ctx = EcContext {
            channel: &mut ch,
            ledger: &mut ledger,
            kernels: &k,
            qber_estimate: qber,
            rng: &mut rng,
        };
        Cascade::default()
            .reconcile_alice(&mut ctx, &alice)
            .unwrap();
        ledger
    });
    let mut ch = ClassicalChannel::new(Box::new(tb));
    let mut ledger = LeakageLedger::default();
    let mut rng = ChaCha20Rng::seed_from_u64(seed + 1);
    let mut ctx = EcContext {
        channel: &mut ch,
        ledger: &mut ledger,
        kernels: &k,
        qber_estimate: qber,
        rng: &mut rng,
    };
    let (out, stats) = Cascade::default()
        .reconcile_bob(&mut ctx, &mut bob)
        .unwrap();
    let la = alice_thread.join().unwrap();
    (bob, out, la, ledger, stats)
}

fn random_bits(rng: &mut impl Rng, n: usize) -> BitVec {
    let words: Vec<u64> = (0..n.div_ceil(64)).map(|_| rng.next_u64()).collect();
    BitVec::from_words(words, n)
}

fn with_errors(a: &BitVec, positions: &[usize]) -> BitVec {
    let mut b = a.clone();
    for &p in positions {
        b.flip(p);
    }
    b
}

#[test]
fn block_sizes_follow_brassard_salvail() {
    let p = CascadeParams::default();
    assert_eq!(p.block_sizes(0.02, 100_000), vec![37, 74, 148, 296]);
    assert_eq!(p.block_sizes(0.01, 100), vec![73, 100, 100, 100]);
    // Zero estimated errors use the floor.
    assert_eq!(p.block_sizes(0.0, 1 << 20)[0], 730);
}

#[test]
fn corrects_known_error_patterns() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let n = 1000;
    let a: Vec<BitVec> = (0..4).map(|_| random_bits(&mut rng, n)).collect();
    let patterns: Vec<Vec<usize>> = vec![vec![], vec![0], vec![999], vec![10, 11, 500, 998]];
    let b: Vec<BitVec> = a
        .iter()
        .zip(&patterns)
        .map(|(x, p)| with_errors(x, p))
        .collect();
    let (fixed, out, la, lb, stats) = run_cascade(a.clone(), b, 0.01, 1);
    for (f, (x, y)) in a.iter().zip(&fixed).enumerate() {
        assert_eq!(x, y, "frame {f} not corrected");
        assert_eq!(
            out[f],
            FrameOutcome::Corrected {
                flipped: patterns[f].len() as u64
            }
        );
    }
    // Both ledgers saw the same disclosure.
    assert_eq!(la, lb);
    // Leakage: at least the top-level parities of 4 passes, k = 73, 146, 292, 584.
    let top: u64 = [73usize, 146, 292, 584]
        .iter()
        .map(|&k| 4 * n.div_ceil(k) as u64)
        .sum();
    assert!(la.error_correction_bits >= top);
    assert!(stats.round_trips >= 4);
}

#[test]
fn error_free_frames_disclose_only_top_parities() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let a: Vec<BitVec> = (0..2).map(|_| random_bits(&mut rng, 4096)).collect();
    let (fixed, _, la, _, stats) = run_cascade(a.clone(), a.clone(), 0.02, 2);
    assert_eq!(fixed, a);
    let top: u64 = [37usize, 74, 148, 296]
        .iter()
        .map(|&k| 2 * 4096usize.div_ceil(k) as u64)
        .sum();
    assert_eq!(la.error_correction_bits, top);
    assert_eq!(stats.round_trips, 4);
}

#[test]
fn bsc_frames_are_corrected_with_literature_efficiency() {
    // Original Cascade at n = 10^4, QBER 2 %: f ≈ 1.15–1.16 (Martinez-Mateo et al. 2015 Fig. 1;
    // cascade-cpp 1.159). 40 frames give a mean within a few percent.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (n, q, frames) = (10_000usize, 0.02, 40);
    let a: Vec<BitVec> = (0..frames).map(|_| random_bits(&mut rng, n)).collect();
    let mut errors = 0u64;
    let b: Vec<BitVec> = a
        .iter()
        .map(|x| {
            let pos: Vec<usize> = (0..n).filter(|_| rng.random_bool(q)).collect();
            errors += pos.len() as u64;
            with_errors(x, &pos)
        })
        .collect();
    let (fixed, out, la, _, _) = run_cascade(a.clone(), b, q, 3);
    let wrong = a.iter().zip(&fixed).filter(|(x, y)| x != y).count();
    assert!(wrong <= 1, "{wrong} frames left with errors");
    let flips: u64 = out
        .iter()
        .map(|o| {
            if let FrameOutcome::Corrected { flipped } = o {
                *flipped
            } else {
                0
            }
        })
        .sum();
    assert!(flips <= errors);
    let f = crate::error_correction::efficiency(
        la.error_correction_bits,
        (n * frames) as u64,
        errors as f64 / (n * frames) as f64,
    )
    .unwrap();
    eprintln!("cascade n=1e4 q=2% f={f:.4}");
    assert!((1.08..1.25).contains(&f), "efficiency {f}");
}
