//! Reconciliation over simulated binary-symmetric-channel noise, both parties in one process:
//! the engine behind `qkd bench ec` and the reconciliation tests.

use super::{EcContext, EcStats, FrameOutcome, Reconciler};
use crate::bits::BitVec;
use crate::classical::{ClassicalChannel, transport::in_memory};
use crate::error::Result;
use crate::kernels::Kernels;
use crate::ledger::LeakageLedger;
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Random frames for Alice and the same frames through a BSC(q) for Bob.
pub fn bsc_frames(lengths: &[usize], q: f64, seed: u64) -> (Vec<BitVec>, Vec<BitVec>, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let threshold = (q * 2f64.powi(64)) as u64;
    let mut errors = 0;
    let mut a = Vec::with_capacity(lengths.len());
    let mut b = Vec::with_capacity(lengths.len());
    for &n in lengths {
        let x = BitVec::from_words((0..n.div_ceil(64)).map(|_| rng.next_u64()).collect(), n);
        let mut y = x.clone();
        for i in 0..n {
            if rng.next_u64() < threshold {
                y.flip(i);
                errors += 1;
            }
        }
        a.push(x);
        b.push(y);
    }
    (a, b, errors)
}

/// Result of reconciling a set of frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRun {
    /// Alice's ledger.
    pub alice_ledger: LeakageLedger,
    /// Bob's ledger.
    pub bob_ledger: LeakageLedger,
    /// Frames the protocol reported as failed (known to both).
    pub failed: Vec<bool>,
    /// Frames reported corrected whose bits differ from Alice's (caught only by verification).
    pub undetected: usize,
    /// Bob's counters.
    pub stats: EcStats,
    /// Wall time of the whole exchange.
    pub elapsed_s: f64,
}

/// Run `alice` and `bob` (two instances of one protocol) over an in-memory channel.
pub fn run_pair(
    alice: Box<dyn Reconciler>,
    bob: Box<dyn Reconciler>,
    alice_frames: &[BitVec],
    bob_frames: &mut [BitVec],
    qber_estimate: f64,
    kernels: Kernels,
) -> Result<PairRun> {
    run_pair_with_latency(
        alice,
        bob,
        alice_frames,
        bob_frames,
        qber_estimate,
        kernels,
        std::time::Duration::ZERO,
    )
}

/// [`run_pair`] over a channel that delivers every message `one_way` after it was sent.
pub fn run_pair_with_latency(
    mut alice: Box<dyn Reconciler>,
    mut bob: Box<dyn Reconciler>,
    alice_frames: &[BitVec],
    bob_frames: &mut [BitVec],
    qber_estimate: f64,
    kernels: Kernels,
    one_way: std::time::Duration,
) -> Result<PairRun> {
    let (ta, tb) = in_memory::pair_with_latency(one_way);
    let start = Instant::now();
    let (alice_result, bob_result) = std::thread::scope(|s| {
        let a = s.spawn(move || -> Result<(Vec<bool>, LeakageLedger)> {
            let mut ch = ClassicalChannel::new(Box::new(ta));
            let mut ledger = LeakageLedger::default();
            let mut rng = ChaCha20Rng::seed_from_u64(0xa11ce);
            let mut ctx = EcContext {
                channel: &mut ch,
                ledger: &mut ledger,
                kernels: &kernels,
                qber_estimate,
                rng: &mut rng,
            };
            let (failed, _) = alice.reconcile_alice(&mut ctx, alice_frames)?;
            Ok((failed, ledger))
        });
        let b = (|| -> Result<(Vec<FrameOutcome>, EcStats, LeakageLedger)> {
            let mut ch = ClassicalChannel::new(Box::new(tb));
            let mut ledger = LeakageLedger::default();
            let mut rng = ChaCha20Rng::seed_from_u64(0xb0b);
            let mut ctx = EcContext {
                channel: &mut ch,
                ledger: &mut ledger,
                kernels: &kernels,
                qber_estimate,
                rng: &mut rng,
            };
            let (out, stats) = bob.reconcile_bob(&mut ctx, bob_frames)?;
            Ok((out, stats, ledger))
        })();
        (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    let (outcomes, stats, bob_ledger) = bob_result?;
    let (failed, alice_ledger) = alice_result?;
    let bob_failed: Vec<bool> = outcomes
        .iter()
        .map(|o| *o == FrameOutcome::Failed)
        .collect();
    if bob_failed != failed {
        return Err(crate::error::ProtocolError::Disagreement {
            what: "failed frames",
            detail: "Alice's and Bob's lists of failed frames differ".into(),
        }
        .into());
    }
    let undetected = alice_frames
        .iter()
        .zip(bob_frames.iter())
        .zip(&failed)
        .filter(|((a, b), f)| !**f && a != b)
        .count();
    Ok(PairRun {
        alice_ledger,
        bob_ledger,
        failed,
        undetected,
        stats,
        elapsed_s,
    })
}
