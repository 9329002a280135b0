//! The LDPC reconciliation protocol (one-way syndrome reconciliation with blind retries).
//!
//! 1. Both parties derive the same plan from the public error-rate estimate q: the catalog code
//!    of the configured length and the puncturing/shortening that aim at efficiency `f₀`
//!    ([`super::LdpcCode::adaptation`]); the block is cut into equal frames of at most k key
//!    bits, shorter frames being shortened further.
//! 2. Alice sends, for every frame, the syndrome of [key bits, public shortened bits (from a
//!    seed), secret random punctured bits] — all frames in one message.
//! 3. Bob decodes every frame (all cores) and answers which frames failed.
//! 4. Blind reconciliation (Martinez-Mateo, Elkouss, Martin, QIC 12 (2012)): the plan punctures
//!    enough positions that revealing them all raises the efficiency from `f₀` to
//!    `f₀ + max_retries·retry_step`; for each failed frame Alice reveals the next Δ punctured
//!    bits (key positions in a seeded order only if the punctured ones run out), each revealed
//!    bit entering the ledger, and Bob decodes again with those bits known. After `max_retries`
//!    the frames still failing are reported as failed and discarded by verification.

use super::catalog;
use super::decoder::{KNOWN_LLR, quantized_llr};
use super::rate::FrameLayout;
use super::{LdpcCode, assemble, bob_llrs, extract_key, syndrome_words};
use crate::bits::BitVec;
use crate::classical::{Message, unexpected};
use crate::error::{ConfigError, ProtocolError, Result};
use crate::error_correction::{EcContext, EcStats, FrameOutcome, Reconciler};
use crate::kernels::Kernels;
use crate::kernels::ldpc::{CheckRule, NmsParams, NmsScratch};
use crate::parameter_estimation::finite_key::binary_entropy;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

/// Settings of the LDPC reconciler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LdpcSettings {
    /// Code length (a catalog length: 16384, 65536 or 102400).
    pub code_bits: usize,
    /// Efficiency the first attempt aims at.
    pub efficiency: f64,
    /// Blind retries after a failure.
    pub max_retries: u32,
    /// Efficiency added by each retry.
    pub retry_step: f64,
    /// Decoder.
    pub decoder: NmsParams,
}

impl Default for LdpcSettings {
    fn default() -> Self {
        LdpcSettings {
            code_bits: 102_400,
            efficiency: 1.1,
            max_retries: 3,
            retry_step: 0.04,
            decoder: NmsParams {
                rule: CheckRule::Spa,
                max_iterations: 60,
                alpha_shift: 2,
                offset: 3,
            },
        }
    }
}

/// The plan both parties derive for a block.
#[derive(Debug, Clone)]
pub struct LdpcPlan {
    /// The code.
    pub code: &'static LdpcCode,
    /// Punctured positions per frame.
    pub punctured: usize,
    /// Shortened positions of a full frame.
    pub shortened: usize,
    /// Key bits of a full frame.
    pub key_bits: usize,
    /// Bits revealed per blind retry.
    pub reveal_step: usize,
}

/// Error-rate floor for planning (an estimate of 0 still plans for some noise).
const MIN_PLAN_QBER: f64 = 0.002;

impl LdpcSettings {
    /// The plan for error rate `q`.
    pub fn plan(&self, q: f64) -> Result<LdpcPlan> {
        let q = q.clamp(MIN_PLAN_QBER, 0.5);
        let family = catalog::of_length(self.code_bits);
        if family.is_empty() {
            return Err(ConfigError::invalid(
                "ldpc-code-bits",
                format!(
                    "no built-in codes of length {} (available: {:?})",
                    self.code_bits,
                    catalog::lengths()
                ),
            )
            .into());
        }
        let f_max = self.efficiency + self.retry_step * f64::from(self.max_retries);
        let options: Vec<(&'static LdpcCode, usize, usize)> = family
            .iter()
            .filter_map(|c| {
                c.adaptation(q, self.efficiency, f_max)
                    .map(|(p, s)| (*c, p, s))
            })
            .collect();
        // The least adaptation, puncturing weighted as five times as harmful as shortening
        // (punctured bits start as erasures; shortened ones are known).
        let cost = |o: &&(&LdpcCode, usize, usize)| 5 * o.1 + o.2;
        let choice = options.iter().min_by_key(cost).copied();
        let (code, p, s) = match choice {
            Some(c) => c,
            None => {
                // No code reaches f₀ exactly: each code punctured as far as allowed, the one
                // whose efficiency is the smallest above f₀ (else the largest below).
                let h = binary_entropy(q);
                let f_of = |c: &LdpcCode| {
                    let p = c.pattern.max_punctured() as f64;
                    (c.code.m() as f64 - p) / ((c.code.n() as f64 - p) * h)
                };
                let above = family
                    .iter()
                    .filter(|c| f_of(c) >= self.efficiency)
                    .min_by(|a, b| f_of(a).total_cmp(&f_of(b)));
                let c = *above
                    .or_else(|| family.iter().max_by(|a, b| f_of(a).total_cmp(&f_of(b))))
                    .unwrap();
                (c, c.pattern.max_punctured(), 0)
            }
        };
        let key_bits = code.code.n() - p - s;
        let reveal_step =
            ((self.retry_step * binary_entropy(q) * key_bits as f64).ceil() as usize).max(1);
        Ok(LdpcPlan {
            code,
            punctured: p,
            shortened: s,
            key_bits,
            reveal_step,
        })
    }
}

/// LDPC reconciliation behind the [`Reconciler`] trait.
#[derive(Debug, Clone, Default)]
pub struct LdpcReconciler {
    /// Settings.
    pub settings: LdpcSettings,
}

/// Balanced frame lengths of at most `k` bits.
fn balanced(n: usize, k: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    let frames = n.div_ceil(k);
    (0..frames)
        .map(|i| n / frames + usize::from(i < n % frames))
        .collect()
}

/// Values of the shortened positions of frame `f` (public).
fn shortened_values(seed: &[u8; 32], f: usize, count: usize) -> BitVec {
    let mut rng = ChaCha8Rng::from_seed(*seed);
    rng.set_stream(f as u64);
    BitVec::from_words(
        (0..count.div_ceil(64)).map(|_| rng.next_u64()).collect(),
        count,
    )
}

/// The positions revealed by the first `count` blind-retry bits of a frame: punctured positions
/// in reverse puncturing order, then (only if those run out) key positions in a seeded order.
fn reveal_positions(layout: &FrameLayout, seed: &[u8; 32], f: usize, count: usize) -> Vec<u32> {
    let mut order: Vec<u32> = layout.punctured.iter().rev().take(count).copied().collect();
    if order.len() < count {
        let mut keys = layout.key.clone();
        let mut rng = ChaCha8Rng::from_seed(*seed);
        rng.set_stream((1 << 40) | f as u64);
        let (chosen, _) = keys.partial_shuffle(&mut rng, count - order.len());
        order.extend_from_slice(chosen);
    }
    order
}

/// Frame layouts of a plan, one per distinct amount of shortening.
struct Layouts {
    by_short: std::collections::HashMap<usize, Arc<FrameLayout>>,
}

impl Layouts {
    fn new() -> Self {
        Layouts {
            by_short: std::collections::HashMap::new(),
        }
    }
    fn get(&mut self, code: &LdpcCode, p: usize, s: usize) -> Arc<FrameLayout> {
        self.by_short
            .entry(s)
            .or_insert_with(|| Arc::new(code.pattern.layout(p, s)))
            .clone()
    }
}

struct FrameState {
    layout: Arc<FrameLayout>,
    llrs: Vec<i8>,
    syndrome: Vec<u64>,
    revealed: usize,
    decoded: Option<BitVec>,
}

fn decode_frames(
    k: &Kernels,
    code: &LdpcCode,
    params: NmsParams,
    frames: &mut [FrameState],
    todo: &[usize],
) -> u64 {
    let mut refs: Vec<&mut FrameState> = frames
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| todo.contains(i))
        .map(|(_, f)| f)
        .collect();
    refs.par_iter_mut()
        .map_init(NmsScratch::default, |scratch, st| {
            let out = super::decode(k, code, &st.llrs, &st.syndrome, params, scratch);
            st.decoded = out
                .converged
                .then(|| extract_key(k, &st.layout, &scratch.hard));
            u64::from(out.iterations)
        })
        .sum()
}

impl Reconciler for LdpcReconciler {
    fn name(&self) -> &'static str {
        "ldpc"
    }

    fn frame_lengths(&self, n: usize, qber: f64) -> Vec<usize> {
        match self.settings.plan(qber) {
            Ok(plan) => balanced(n, plan.key_bits),
            Err(_) => vec![],
        }
    }

    fn reconcile_alice(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &[BitVec],
    ) -> Result<(Vec<bool>, EcStats)> {
        let plan = self.settings.plan(ctx.qber_estimate)?;
        let code = plan.code;
        let k = ctx.kernels;
        let mut stats = EcStats::default();
        let mut seed = [0u8; 32];
        ctx.rng.fill_bytes(&mut seed);
        let mut layouts = Layouts::new();
        let mut frame_layouts = Vec::with_capacity(frames.len());
        let mut codewords = Vec::with_capacity(frames.len());
        let mut syndromes = Vec::with_capacity(frames.len());
        let mut shortened = Vec::with_capacity(frames.len());
        for (f, key) in frames.iter().enumerate() {
            if key.len() > plan.key_bits {
                return Err(ProtocolError::Malformed(format!(
                    "frame of {} bits exceeds the code's {}",
                    key.len(),
                    plan.key_bits
                ))
                .into());
            }
            let s = plan.shortened + plan.key_bits - key.len();
            let layout = layouts.get(code, plan.punctured, s);
            let sv = shortened_values(&seed, f, s);
            let pv = BitVec::from_words(
                (0..plan.punctured.div_ceil(64))
                    .map(|_| ctx.rng.next_u64())
                    .collect(),
                plan.punctured,
            );
            let x = assemble(k, &layout, key, &sv, &pv);
            syndromes.push(BitVec::from_words(
                syndrome_words(&code.layout, &x),
                code.code.m(),
            ));
            shortened.push(s as u32);
            frame_layouts.push(layout);
            codewords.push(BitVec::from_words(x, code.code.n()));
        }
        let msg = Message::LdpcSyndromes {
            seed,
            code: code.code.name.clone(),
            punctured: plan.punctured as u32,
            shortened,
            syndromes,
        };
        ctx.channel.send(&msg, ctx.ledger)?;
        stats.messages += 1;
        let mut revealed = vec![0usize; frames.len()];
        let mut retries = 0;
        loop {
            let failed = match ctx.channel.recv(ctx.ledger)? {
                Message::LdpcStatus { failed } if failed.len() == frames.len() => failed,
                Message::LdpcStatus { failed } => {
                    return Err(ProtocolError::Malformed(format!(
                        "status for {} frames, expected {}",
                        failed.len(),
                        frames.len()
                    ))
                    .into());
                }
                other => return Err(unexpected("LdpcStatus", &other)),
            };
            stats.messages += 1;
            let failed_frames: Vec<usize> = failed.ones_iter().collect();
            if failed_frames.is_empty() || retries == self.settings.max_retries {
                return Ok(((0..frames.len()).map(|f| failed.get(f)).collect(), stats));
            }
            retries += 1;
            let mut values = BitVec::new();
            for &f in &failed_frames {
                let upto = (revealed[f] + plan.reveal_step).min(code.code.n());
                let positions = reveal_positions(&frame_layouts[f], &seed, f, upto);
                for &pos in &positions[revealed[f]..] {
                    values.push(codewords[f].get(pos as usize));
                }
                revealed[f] = positions.len();
            }
            stats.revealed_bits += values.len() as u64;
            ctx.channel
                .send(&Message::LdpcReveal { values }, ctx.ledger)?;
            stats.messages += 1;
            stats.round_trips += 1;
        }
    }

    fn reconcile_bob(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &mut [BitVec],
    ) -> Result<(Vec<FrameOutcome>, EcStats)> {
        let plan = self.settings.plan(ctx.qber_estimate)?;
        let code = plan.code;
        let k = ctx.kernels;
        let mut stats = EcStats::default();
        let (seed, name, punctured, shortened, syndromes) = match ctx.channel.recv(ctx.ledger)? {
            Message::LdpcSyndromes {
                seed,
                code,
                punctured,
                shortened,
                syndromes,
            } => (seed, code, punctured, shortened, syndromes),
            other => return Err(unexpected("LdpcSyndromes", &other)),
        };
        stats.messages += 1;
        if name != code.code.name
            || punctured as usize != plan.punctured
            || shortened.len() != frames.len()
            || syndromes.len() != frames.len()
        {
            return Err(ProtocolError::Disagreement {
                what: "LDPC plan",
                detail: format!(
                    "Alice: {name}, {punctured} punctured, {} frames; Bob: {}, {} punctured, {} frames",
                    syndromes.len(),
                    code.code.name,
                    plan.punctured,
                    frames.len()
                ),
            }
            .into());
        }
        let llr = quantized_llr(ctx.qber_estimate.max(MIN_PLAN_QBER));
        let mut layouts = Layouts::new();
        let mut states = Vec::with_capacity(frames.len());
        for (f, key) in frames.iter().enumerate() {
            let s = shortened[f] as usize;
            if s != plan.shortened + plan.key_bits - key.len()
                || syndromes[f].len() != code.code.m()
            {
                return Err(ProtocolError::Disagreement {
                    what: "LDPC frame",
                    detail: format!("frame {f}: shortening or syndrome length differs"),
                }
                .into());
            }
            let layout = layouts.get(code, plan.punctured, s);
            let sv = shortened_values(&seed, f, s);
            let llrs = bob_llrs(k, &layout, key, &sv, llr);
            states.push(FrameState {
                layout,
                llrs,
                syndrome: syndromes[f].words().to_vec(),
                revealed: 0,
                decoded: None,
            });
        }
        let params = self.settings.decoder;
        let all: Vec<usize> = (0..frames.len()).collect();
        stats.decoder_iterations += decode_frames(k, code, params, &mut states, &all);
        let mut retries = 0;
        loop {
            let failed = BitVec::from_bools(
                &states
                    .iter()
                    .map(|s| s.decoded.is_none())
                    .collect::<Vec<_>>(),
            );
            ctx.channel.send(
                &Message::LdpcStatus {
                    failed: failed.clone(),
                },
                ctx.ledger,
            )?;
            stats.messages += 1;
            let todo: Vec<usize> = failed.ones_iter().collect();
            if todo.is_empty() || retries == self.settings.max_retries {
                break;
            }
            retries += 1;
            let values = match ctx.channel.recv(ctx.ledger)? {
                Message::LdpcReveal { values } => values,
                other => return Err(unexpected("LdpcReveal", &other)),
            };
            stats.messages += 1;
            stats.round_trips += 1;
            stats.revealed_bits += values.len() as u64;
            let mut at = 0;
            for &f in &todo {
                let st = &mut states[f];
                let upto = (st.revealed + plan.reveal_step).min(code.code.n());
                let positions = reveal_positions(&st.layout, &seed, f, upto);
                for &pos in &positions[st.revealed..] {
                    if at >= values.len() {
                        return Err(ProtocolError::Malformed("LdpcReveal too short".into()).into());
                    }
                    st.llrs[pos as usize] = if values.get(at) {
                        -KNOWN_LLR
                    } else {
                        KNOWN_LLR
                    };
                    at += 1;
                }
                st.revealed = positions.len();
            }
            if at != values.len() {
                return Err(ProtocolError::Malformed("LdpcReveal too long".into()).into());
            }
            stats.decoder_iterations += decode_frames(k, code, params, &mut states, &todo);
        }
        let mut outcomes = Vec::with_capacity(frames.len());
        for (frame, st) in frames.iter_mut().zip(&states) {
            match &st.decoded {
                Some(d) => {
                    let flipped = frame.hamming_distance(k, d);
                    *frame = d.clone();
                    outcomes.push(FrameOutcome::Corrected { flipped });
                }
                None => outcomes.push(FrameOutcome::Failed),
            }
        }
        Ok((outcomes, stats))
    }
}
