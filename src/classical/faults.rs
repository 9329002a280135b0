//! A fault-injecting wire for tests: frames dropped, duplicated, reordered, corrupted or
//! delayed between the two parties, by a seeded plan. Every fault must end in a clean abort
//! (the authenticator refuses the frame sequence or its tag, or the peer times out) or, for
//! delays only, in the same key as without faults; never in a wrong or mismatched key.

use super::auth::AuthPool;
use super::link::{LinkOptions, MemoryWire, MuxLink, WireRead};
use crate::error::{Result, TransportError};
use crate::protocol::Role;
use rand::{RngExt, SeedableRng};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to do to the frames of one direction.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Seed of the fault choices.
    pub seed: u64,
    /// Frames passed untouched first (e.g. to let the handshake through).
    pub after_frames: u64,
    /// Probability that a frame is dropped.
    pub drop: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is swapped with the next one.
    pub reorder: f64,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Probability that a frame is held back by `delay`.
    pub delay_prob: f64,
    /// How long a delayed frame is held back.
    pub delay: Duration,
    /// Keep a copy of every frame read from the wire (the seed corpora of the fuzz targets).
    pub record: Option<Arc<std::sync::Mutex<Vec<Vec<u8>>>>>,
}

/// Faults applied so far, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Frames seen.
    pub frames: AtomicU64,
    /// Dropped.
    pub dropped: AtomicU64,
    /// Duplicated.
    pub duplicated: AtomicU64,
    /// Reordered.
    pub reordered: AtomicU64,
    /// Corrupted.
    pub corrupted: AtomicU64,
    /// Delayed.
    pub delayed: AtomicU64,
}

impl FaultCounts {
    /// Faults other than delays.
    pub fn damaging(&self) -> u64 {
        [
            &self.dropped,
            &self.duplicated,
            &self.reordered,
            &self.corrupted,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// A reader that applies a [`FaultPlan`] to the frames of another reader.
pub struct FaultyWire<R> {
    inner: R,
    plan: FaultPlan,
    rng: rand_chacha::ChaCha8Rng,
    held: VecDeque<Vec<u8>>,
    counts: Arc<FaultCounts>,
}

impl<R: WireRead> FaultyWire<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, plan: FaultPlan) -> (Self, Arc<FaultCounts>) {
        let counts = Arc::new(FaultCounts::default());
        (
            FaultyWire {
                inner,
                rng: rand_chacha::ChaCha8Rng::seed_from_u64(plan.seed),
                plan,
                held: VecDeque::new(),
                counts: counts.clone(),
            },
            counts,
        )
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }
}

impl<R: WireRead> WireRead for FaultyWire<R> {
    fn read_frame(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, TransportError> {
        if let Some(f) = self.held.pop_front() {
            return Ok(Some(f));
        }
        loop {
            let Some(mut f) = self.inner.read_frame(timeout)? else {
                return Ok(None);
            };
            if let Some(r) = &self.plan.record {
                r.lock().unwrap_or_else(|e| e.into_inner()).push(f.clone());
            }
            let n = self.counts.frames.fetch_add(1, Ordering::Relaxed);
            if n < self.plan.after_frames {
                return Ok(Some(f));
            }
            let c = self.counts.clone();
            if self.roll(self.plan.drop) {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.roll(self.plan.delay_prob) {
                c.delayed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(self.plan.delay);
            }
            if self.roll(self.plan.corrupt) && !f.is_empty() {
                let bit = self.rng.random_range(0..f.len() * 8);
                f[bit / 8] ^= 1 << (bit % 8);
                self.counts.corrupted.fetch_add(1, Ordering::Relaxed);
            }
            if self.roll(self.plan.duplicate) {
                self.counts.duplicated.fetch_add(1, Ordering::Relaxed);
                self.held.push_back(f.clone());
                return Ok(Some(f));
            }
            if self.roll(self.plan.reorder) {
                if let Some(g) = self.inner.read_frame(timeout)? {
                    self.counts.reordered.fetch_add(1, Ordering::Relaxed);
                    self.held.push_back(f);
                    return Ok(Some(g));
                }
                return Ok(Some(f));
            }
            return Ok(Some(f));
        }
    }
}

/// Two parties' links over an in-memory wire whose frames towards Bob pass through `to_bob`
/// and those towards Alice through `to_alice`; returns the links and the fault counts of
/// each direction. The pool and the link are those of [`super::in_memory_pair`]; only
/// `peer_timeout` is shortened to `timeout` so that a dropped frame ends the run quickly.
pub fn faulty_pair(
    pool_words: usize,
    seed: Option<u64>,
    to_bob: FaultPlan,
    to_alice: FaultPlan,
    timeout: Duration,
) -> Result<(MuxLink, MuxLink, Arc<FaultCounts>, Arc<FaultCounts>)> {
    let (pa, pb) = AuthPool::ephemeral_pair(pool_words, seed)?;
    let ((ra, wa), (rb, wb)) = MemoryWire::pair();
    let (ra, to_alice_counts) = FaultyWire::new(ra, to_alice);
    let (rb, to_bob_counts) = FaultyWire::new(rb, to_bob);
    let opts = |role| LinkOptions {
        peer_timeout: timeout,
        ..LinkOptions::new(role)
    };
    let (oa, ob) = (opts(Role::Alice), opts(Role::Bob));
    let a = std::thread::spawn(move || {
        MuxLink::establish(Box::new(ra), Box::new(wa), Arc::new(pa), oa)
    });
    let b = MuxLink::establish(Box::new(rb), Box::new(wb), Arc::new(pb), ob);
    let a = a.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    Ok((a?, b?, to_bob_counts, to_alice_counts))
}
