//! A small generic runtime for stages joined by bounded queues. It knows nothing about QKD.
//!
//! * a [`Source`] produces items in sequence order (`seq` 0, 1, 2, …);
//! * a [`Stage`] maps one item to one item, on its own thread;
//! * [`Pipeline::pool`] runs N instances of a stage; item `seq` goes to worker `seq mod N`
//!   (deterministic, so two cooperating pipelines agree on who handles what) and an in-order
//!   merge restores the sequence;
//! * a sink consumes the final items.
//!
//! Queues are bounded (`crossbeam-channel`), so a slow stage back-pressures its producers.
//! Errors: a failing thread stops, which closes its queues; upstream threads stop when they can
//! no longer send, downstream threads drain and finish. [`Pipeline::join`] returns the first
//! error that is not merely a consequence of another (see [`crate::error::Error::is_secondary`]).
//! Per-stage metrics (items, bits, busy time) are collected for the report.

use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Something that flows through a pipeline.
pub trait Item: Send + 'static {
    /// Sequence number: consecutive in source order, from the pipeline's first sequence number
    /// ([`Pipeline::starting_at`], 0 by default).
    fn seq(&self) -> u64;
    /// Payload size in bits, for throughput metrics.
    fn size_bits(&self) -> u64 {
        0
    }
}

/// Produces the items.
pub trait Source: Send + 'static {
    /// Item type.
    type Out: Item;
    /// Name for metrics.
    fn name(&self) -> &'static str;
    /// Next item, or `None` at the end.
    fn next(&mut self) -> Result<Option<Self::Out>>;
    /// Called once when the source stops with an error (e.g. to tell a peer).
    fn on_error(&mut self, _err: &Error) {}
}

/// Maps items one to one.
pub trait Stage: Send + 'static {
    /// Input item.
    type In: Item;
    /// Output item.
    type Out: Item;
    /// Name for metrics.
    fn name(&self) -> &'static str;
    /// Process one item.
    fn process(&mut self, input: Self::In) -> Result<Self::Out>;
    /// Called once when processing fails (e.g. to tell a peer).
    fn on_error(&mut self, _err: &Error) {}
}

/// Metrics of one stage (summed over its workers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageMetrics {
    /// Stage name.
    pub name: String,
    /// Worker threads.
    pub workers: usize,
    /// Items produced.
    pub items: u64,
    /// Bits produced.
    pub bits: u64,
    /// Time spent processing (summed over workers), seconds.
    pub busy_s: f64,
    /// Output rate over busy time, bits per second (per worker-second).
    pub bits_per_busy_s: f64,
}

struct Shared {
    metrics: Mutex<Vec<StageMetrics>>,
}

impl Shared {
    fn slot(&self, name: &str, workers: usize) -> usize {
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        m.push(StageMetrics {
            name: name.to_string(),
            workers,
            ..Default::default()
        });
        m.len() - 1
    }

    fn add(&self, slot: usize, items: u64, bits: u64, busy: f64) {
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut m[slot];
        s.items += items;
        s.bits += bits;
        s.busy_s += busy;
    }
}

/// A typed queue end between two threads of a pipeline.
pub struct Flow<T> {
    rx: Receiver<T>,
}

/// A pipeline under construction / running.
pub struct Pipeline {
    capacity: usize,
    first_seq: u64,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<Result<()>>>,
}

impl Pipeline {
    /// A pipeline whose queues hold at most `capacity` items each.
    pub fn new(capacity: usize) -> Pipeline {
        Pipeline {
            capacity: capacity.max(1),
            first_seq: 0,
            shared: Arc::new(Shared {
                metrics: Mutex::new(Vec::new()),
            }),
            handles: Vec::new(),
        }
    }

    /// The source's first item has sequence number `seq` (a resumed run).
    pub fn starting_at(mut self, seq: u64) -> Pipeline {
        self.first_seq = seq;
        self
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() -> Result<()> + Send + 'static) {
        let h = std::thread::Builder::new()
            .name(format!("qkd-{name}"))
            .spawn(f)
            .expect("spawning a pipeline thread");
        self.handles.push(h);
    }

    /// Start a source thread.
    pub fn source<S: Source>(&mut self, mut src: S) -> Flow<S::Out> {
        let (tx, rx) = bounded(self.capacity);
        let shared = self.shared.clone();
        let slot = shared.slot(src.name(), 1);
        self.spawn(src.name(), move || {
            loop {
                let t = Instant::now();
                let item = match src.next() {
                    Ok(Some(item)) => item,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        src.on_error(&e);
                        return Err(e);
                    }
                };
                shared.add(slot, 1, item.size_bits(), t.elapsed().as_secs_f64());
                if tx.send(item).is_err() {
                    return Ok(()); // downstream stopped; its error is reported there
                }
            }
        });
        Flow { rx }
    }

    /// Start a stage thread.
    pub fn stage<S: Stage>(&mut self, input: Flow<S::In>, stage: S) -> Flow<S::Out> {
        let (tx, rx) = bounded(self.capacity);
        let slot = self.shared.slot(stage.name(), 1);
        self.spawn_worker(input.rx, tx, stage, slot);
        Flow { rx }
    }

    fn spawn_worker<S: Stage>(
        &mut self,
        rx: Receiver<S::In>,
        tx: Sender<S::Out>,
        mut stage: S,
        slot: usize,
    ) {
        let shared = self.shared.clone();
        self.spawn(stage.name(), move || {
            for item in rx {
                let t = Instant::now();
                let out = match stage.process(item) {
                    Ok(o) => o,
                    Err(e) => {
                        stage.on_error(&e);
                        return Err(e);
                    }
                };
                shared.add(slot, 1, out.size_bits(), t.elapsed().as_secs_f64());
                if tx.send(out).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
    }

    /// Run `stages.len()` workers; item `seq` goes to worker `seq mod N`; outputs are merged
    /// back into sequence order.
    pub fn pool<S: Stage>(&mut self, input: Flow<S::In>, stages: Vec<S>) -> Flow<S::Out> {
        assert!(!stages.is_empty(), "a pool needs at least one worker");
        let n = stages.len();
        if n == 1 {
            return self.stage(input, stages.into_iter().next().unwrap());
        }
        let slot = self.shared.slot(stages[0].name(), n);
        let mut worker_tx = Vec::with_capacity(n);
        let (merge_tx, merge_rx) = bounded::<S::Out>(self.capacity * n);
        for stage in stages {
            let (wtx, wrx) = bounded(self.capacity);
            worker_tx.push(wtx);
            self.spawn_worker(wrx, merge_tx.clone(), stage, slot);
        }
        drop(merge_tx);
        // Dispatcher.
        let in_rx = input.rx;
        self.spawn("dispatch", move || {
            for item in in_rx {
                let w = (item.seq() % n as u64) as usize;
                if worker_tx[w].send(item).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        // In-order merge.
        let (out_tx, out_rx) = bounded(self.capacity);
        let first = self.first_seq;
        self.spawn("merge", move || {
            let mut next = first;
            let mut pending: BTreeMap<u64, S::Out> = BTreeMap::new();
            for item in merge_rx {
                pending.insert(item.seq(), item);
                while let Some(item) = pending.remove(&next) {
                    next += 1;
                    if out_tx.send(item).is_err() {
                        return Ok(());
                    }
                }
            }
            // Items that never found their turn are a broken sequence, never silently dropped.
            match pending.keys().next() {
                None => Ok(()),
                Some(&seq) => Err(crate::error::ProtocolError::Malformed(format!(
                    "pipeline item {seq} never reached the in-order merge's turn (expected {next})"
                ))
                .into()),
            }
        });
        Flow { rx: out_rx }
    }

    /// Consume the items on a sink thread; joining the returned handle gives back `state` and
    /// the sink's result.
    pub fn sink<T: Item, R: Send + 'static>(
        &mut self,
        input: Flow<T>,
        name: &'static str,
        mut state: R,
        mut f: impl FnMut(&mut R, T) -> Result<()> + Send + 'static,
    ) -> JoinHandle<(R, Result<()>)> {
        let shared = self.shared.clone();
        let slot = shared.slot(name, 1);
        std::thread::Builder::new()
            .name(format!("qkd-{name}"))
            .spawn(move || {
                for item in input.rx {
                    let t = Instant::now();
                    let bits = item.size_bits();
                    if let Err(e) = f(&mut state, item) {
                        return (state, Err(e));
                    }
                    shared.add(slot, 1, bits, t.elapsed().as_secs_f64());
                }
                (state, Ok(()))
            })
            .expect("spawning the sink thread")
    }

    /// Wait for every thread; return the metrics, or the most informative error.
    pub fn join(self) -> Result<Vec<StageMetrics>> {
        let mut errors = Vec::new();
        for h in self.handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        pick_error(errors)?;
        let mut m = self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in &mut m {
            s.bits_per_busy_s = if s.busy_s > 0.0 {
                s.bits as f64 / s.busy_s
            } else {
                0.0
            };
        }
        Ok(m)
    }
}

/// The most informative of several errors (a root cause over its consequences).
pub fn pick_error(mut errors: Vec<Error>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let i = errors
        .iter()
        .position(|e| {
            matches!(
                e,
                Error::Aborted(
                    crate::error::AbortReason::QberTooHigh { .. }
                        | crate::error::AbortReason::PhaseErrorTooHigh { .. }
                )
            )
        })
        .or_else(|| {
            errors.iter().position(|e| {
                !e.is_secondary()
                    && !matches!(
                        e,
                        Error::Protocol(crate::error::ProtocolError::PeerFailed(_))
                            | Error::Aborted(_)
                    )
            })
        })
        .or_else(|| errors.iter().position(|e| !e.is_secondary()))
        .unwrap_or(0);
    Err(errors.swap_remove(i))
}

impl<T> Flow<T> {
    /// Receive directly (for tests and custom sinks).
    pub fn into_receiver(self) -> Receiver<T> {
        self.rx
    }
}

#[cfg(test)]
mod tests;
