//! Time synchronisation: from raw time tags to slot-annotated detections.
//!
//! **Prepare and measure** ([`bob_sync`], [`alice_sync`]): Bob's time tagger records his
//! detections (and possibly Alice's sync pulses) in his own clock; Alice's preparation log is
//! indexed by slot. Bob
//! 1. recovers the slot clock: from a sync channel (every N-th slot), by least squares on the
//!    sync times after numbering them by their spacing; or from the detections themselves, by
//!    the circular mean of their phase (time modulo the nominal period) in short windows,
//!    unwrapped and fitted to a line (the phase slope is the frequency offset) — the method of
//!    cqptoolkit's `align::Drift` and LMU's `evaluate_tags` (`reference/formats.md` §7);
//! 2. finds each detector's gate from its folded histogram (phase within the slot): centre and
//!    width, events outside are dropped (cqptoolkit `align::Gating`);
//! 3. finds each detector's integer slot offset against a window of Alice's symbols that she
//!    discloses (counted in the ledger as `sync_sample`; those slots leave the key): the
//!    cross-correlation of Bob's clicks with Alice's ±1 values, by FFT over every offset in
//!    ±`max_offset_slots` (cqptoolkit `align::Offsetting`, qcrypto `pfind`), with the peak's
//!    significance in standard deviations;
//! 4. writes a slot-annotated `.qdl` of his detections in Alice's slot numbers.
//!
//! Public messages carry slot numbers only, never Bob's timestamps (fine timing can leak which
//! detector clicked: arXiv:2203.03250).
//!
//! **Two time-tagging sides** ([`two_sided`]): the coarse offset by FFT cross-correlation of
//! the two event streams' histograms at two resolutions (qcrypto `pfind`), the frequency offset
//! from an early and a late window (S-Fifteen `fpfind`), then coincidence matching with a
//! tracking servo (qcrypto `costream`).

pub mod two_sided;

use crate::bits::BitVec;
use crate::classical::{ClassicalChannel, Message, unexpected};
use crate::error::{ConfigError, Error, FormatError, Result};
use crate::io::detection_log::{
    ChannelInfo, ChannelKind, DetectionLog, DetectionMeta, Record, RecordKind,
};
use crate::io::header::{FLAG_SLOT_ANNOTATED, FLAG_TIME_SORTED, FileHeader};
use crate::io::{DetectionLogWriter, PrepLog};
use crate::ledger::LeakageLedger;
use crate::protocol::Basis;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::{Deserialize, Serialize};
use std::collections::BinaryHeap;
use std::path::Path;

/// Options of the prepare-and-measure synchronisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Largest slot offset searched, each way.
    pub max_offset_slots: u64,
    /// Slots in Alice's disclosed window (chosen from the detection rate when `None`).
    pub window_slots: Option<u64>,
    /// Least significance (peak over noise, in σ) accepted for an offset.
    pub min_significance: f64,
    /// Nominal slot period in ps (from the log's `slot_clock` when `None`).
    pub period_ps: Option<f64>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            max_offset_slots: 1 << 20,
            window_slots: None,
            min_significance: 8.0,
            period_ps: None,
        }
    }
}

/// One detector's gate and offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSync {
    /// Channel id.
    pub channel: u16,
    /// Basis and value it announces.
    pub state: String,
    /// Centre of its gate within the slot, in ps after the slot clock.
    pub gate_center_ps: f64,
    /// Half-width of the gate in ps.
    pub gate_half_width_ps: f64,
    /// RMS spread of its clicks around the centre in ps (timing jitter).
    pub jitter_ps: f64,
    /// Fraction of its clicks inside the gate.
    pub gate_efficiency: f64,
    /// Integer slot offset (Alice slot − Bob slot).
    pub offset_slots: i64,
    /// Correlation peak over noise, in standard deviations.
    pub significance: f64,
    /// Its clicks in the search range.
    pub events_searched: u64,
}

/// What the synchronisation found (in the distill report as `sync`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// `sync channel` or `detections`.
    pub clock_source: String,
    /// Nominal slot period in ps.
    pub nominal_period_ps: f64,
    /// Recovered slot period in Bob's clock, in ps.
    pub period_ps: f64,
    /// Bob's clock rate relative to Alice's, in ppm.
    pub drift_ppm: f64,
    /// Bob's time of Alice's slot 0 on the first detector (clock offset plus that detector's
    /// delay), in ps.
    pub clock_offset_ps: f64,
    /// RMS residual of the clock fit in ps (sync jitter, or the phase scatter of detections).
    pub clock_residual_ps: f64,
    /// Per detector.
    pub detectors: Vec<DetectorSync>,
    /// Alice's disclosed window.
    pub window_first_slot: u64,
    /// Its length.
    pub window_slots: u64,
    /// Bits Alice disclosed.
    pub disclosed_bits: u64,
    /// Detections read.
    pub detections_in: u64,
    /// Detections written with a slot.
    pub detections_out: u64,
    /// Dropped: outside their detector's gate.
    pub gated_out: u64,
    /// Dropped: in the disclosed window.
    pub in_window: u64,
    /// Dropped: before slot 0 or after the last slot of the run.
    pub outside_run: u64,
}

/// The slot-clock description in a raw log's metadata (`slot_clock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotClockMeta {
    /// Nominal period in ps.
    pub period_ps: Option<f64>,
    /// Channel of Alice's sync pulses.
    pub sync_channel: Option<u16>,
    /// Slots between sync pulses.
    pub sync_period_slots: Option<u64>,
}

impl SlotClockMeta {
    /// From a detection log's metadata.
    pub fn of(meta: &DetectionMeta) -> SlotClockMeta {
        meta.extra
            .get("slot_clock")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// Slot position x = (t − origin)/period (t in ticks).
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: f64,
    period: f64,
}

impl Clock {
    fn x(&self, t: i64) -> f64 {
        (t as f64 - self.origin) / self.period
    }
}

fn records(log: &DetectionLog) -> impl Iterator<Item = Result<Record>> + '_ {
    (0..log.blocks().len()).flat_map(move |b| match log.block(b) {
        Ok(recs) => recs.iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    })
}

/// Least squares fit y = a + b·x.
fn line_fit(pts: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x / n, b + y / n));
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for &(x, y) in pts {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
    }
    if sxx == 0.0 {
        return None;
    }
    let b = sxy / sxx;
    let a = my - b * mx;
    let rms = (pts
        .iter()
        .map(|&(x, y)| (y - a - b * x).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    Some((a, b, rms))
}

/// Step 1: the slot clock. Returns the clock, the source, and the fit residual in ticks.
fn estimate_clock(
    log: &DetectionLog,
    sc: &SlotClockMeta,
    period_ticks: f64,
) -> Result<(Clock, String, f64)> {
    let path = log.path().to_path_buf();
    let is_sync = |r: &Record| {
        r.kind == RecordKind::Sync
            || Some(r.channel) == sc.sync_channel && r.kind == RecordKind::Detection
    };
    if let (Some(n), true) = (sc.sync_period_slots, sc.sync_channel.is_some()) {
        let spacing = n as f64 * period_ticks;
        let mut pts = Vec::new();
        let (mut prev, mut idx) = (None::<i64>, 0f64);
        for r in records(log) {
            let r = r?;
            if !is_sync(&r) {
                continue;
            }
            if let Some(p) = prev {
                idx += ((r.time - p) as f64 / spacing).round().max(1.0);
            }
            prev = Some(r.time);
            pts.push((idx, r.time as f64));
        }
        if pts.len() >= 16 {
            let t0 = pts[0].1;
            let shifted: Vec<(f64, f64)> = pts.iter().map(|&(i, t)| (i, t - t0)).collect();
            let (a, b, rms) = line_fit(&shifted).expect("≥ 2 points");
            return Ok((
                Clock {
                    origin: t0 + a,
                    period: b / n as f64,
                },
                "sync channel".into(),
                rms,
            ));
        }
    }
    // From the detections: phase in windows, unwrapped, fitted.
    let (mut first, mut last, mut count) = (None::<i64>, 0i64, 0u64);
    for r in records(log) {
        let r = r?;
        if r.kind == RecordKind::Detection && !is_sync(&r) {
            first.get_or_insert(r.time);
            last = r.time;
            count += 1;
        }
    }
    let Some(first) = first else {
        return Err(FormatError::InvalidField {
            path,
            offset: 64,
            field: "records",
            message: "no detections to synchronise".into(),
        }
        .into());
    };
    let span_slots = ((last - first) as f64 / period_ticks).max(1.0);
    let rate = count as f64 / span_slots;
    // ≥ 64 clicks per window.
    let window_slots = (64.0 / rate).clamp(256.0, 1e7);
    let window_ticks = window_slots * period_ticks;
    let n_windows = ((last - first) as f64 / window_ticks) as usize + 1;
    let mut acc = vec![(0.0f64, 0.0f64, 0u32); n_windows.min(1 << 24)];
    for r in records(log) {
        let r = r?;
        if r.kind != RecordKind::Detection || is_sync(&r) {
            continue;
        }
        let dt = (r.time - first) as f64;
        let w = ((dt / window_ticks) as usize).min(acc.len() - 1);
        let ph = std::f64::consts::TAU * (dt / period_ticks).fract();
        acc[w].0 += ph.cos();
        acc[w].1 += ph.sin();
        acc[w].2 += 1;
    }
    let mut pts = Vec::new();
    let mut prev: Option<f64> = None;
    let mut unwrap = 0.0;
    for (w, &(c, s, n)) in acc.iter().enumerate() {
        if n < 16 || (c * c + s * s).sqrt() < 0.2 * f64::from(n) {
            continue;
        }
        let ph = s.atan2(c) / std::f64::consts::TAU; // cycles
        if let Some(p) = prev {
            let mut d = ph + unwrap - p;
            while d > 0.5 {
                unwrap -= 1.0;
                d -= 1.0;
            }
            while d < -0.5 {
                unwrap += 1.0;
                d += 1.0;
            }
        }
        let v = ph + unwrap;
        prev = Some(v);
        pts.push(((w as f64 + 0.5) * window_ticks, v));
    }
    let Some((phi0, slope, rms)) = line_fit(&pts) else {
        return Err(FormatError::InvalidField {
            path,
            offset: 64,
            field: "records",
            message: format!(
                "the detections show no slot clock at the nominal period of {period_ticks} ticks (too few or too spread)"
            ),
        }
        .into());
    };
    // frac(dt/T) = φ0 + s·dt  ⇒  dt = T/(1 − sT)·(k + φ0).
    let period = period_ticks / (1.0 - slope * period_ticks);
    Ok((
        Clock {
            origin: first as f64 + phi0 * period,
            period,
        },
        "detections".into(),
        rms * period,
    ))
}

/// Bob's side of the prepare-and-measure synchronisation: writes `out` (slot-annotated).
pub fn bob_sync(
    ch: &mut ClassicalChannel,
    ledger: &mut LeakageLedger,
    log: &DetectionLog,
    alice_total_slots: u64,
    opts: &SyncOptions,
    out: &Path,
) -> Result<SyncReport> {
    let meta = log.meta();
    let sc = SlotClockMeta::of(meta);
    let tick_ps = log.header().tick_seconds() * 1e12;
    let period_ps = opts.period_ps.or(sc.period_ps).ok_or_else(|| {
        ConfigError::invalid(
            "slot period",
            format!(
                "{}: raw time tags need time synchronisation, and the log has no slot_clock.period_ps: give the rig's pulse period (--slot-period-ps)",
                log.path().display()
            ),
        )
    })?;
    let period_ticks = period_ps / tick_ps;
    let (clock, source, residual) = estimate_clock(log, &sc, period_ticks)?;
    let is_sync = |r: &Record| r.kind == RecordKind::Sync || Some(r.channel) == sc.sync_channel;

    // Step 2: per-detector folded histograms.
    const BINS: usize = 128;
    let detectors: Vec<(u16, crate::io::detection_log::DetectorState)> = meta
        .channels
        .iter()
        .filter(|c| c.kind == ChannelKind::Detector)
        .filter_map(|c| c.state.map(|s| (c.id, s)))
        .collect();
    if detectors.is_empty() {
        return Err(FormatError::Metadata {
            path: log.path().to_path_buf(),
            offset: 64,
            message: "no detector channel has a (basis, value) state".into(),
        }
        .into());
    }
    let slot_of = |ch: u16| detectors.iter().position(|d| d.0 == ch);
    let mut hist = vec![[0u64; BINS]; detectors.len()];
    let (mut x_min, mut x_max, mut n_in) = (f64::MAX, f64::MIN, 0u64);
    for r in records(log) {
        let r = r?;
        if r.kind != RecordKind::Detection || is_sync(&r) {
            continue;
        }
        let Some(i) = slot_of(r.channel) else {
            continue;
        };
        let x = clock.x(r.time);
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        n_in += 1;
        let f = x - x.floor();
        hist[i][((f * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    // Centre: circular mean of the bins within a quarter slot of the peak; width: their RMS.
    let mut gates = Vec::new();
    for h in &hist {
        let peak = (0..BINS).max_by_key(|&b| h[b]).unwrap_or(0);
        let (mut sum, mut w) = (0.0, 0.0);
        for db in -(BINS as i64 / 4)..=(BINS as i64 / 4) {
            let b = (peak as i64 + db).rem_euclid(BINS as i64) as usize;
            sum += h[b] as f64 * db as f64;
            w += h[b] as f64;
        }
        let center_bins = peak as f64 + 0.5 + if w > 0.0 { sum / w } else { 0.0 };
        let center = center_bins / BINS as f64;
        let mut var = 0.0;
        for (b, &count) in h.iter().enumerate() {
            let mut d = (b as f64 + 0.5) / BINS as f64 - center;
            d -= d.round();
            if d.abs() <= 0.25 {
                var += count as f64 * d * d;
            }
        }
        let sigma = if w > 0.0 { (var / w).sqrt() } else { 0.5 };
        let half = (4.0 * sigma).clamp(2.0 / BINS as f64, 0.5);
        gates.push((center, half, sigma));
    }
    if n_in == 0 {
        return Err(FormatError::InvalidField {
            path: log.path().to_path_buf(),
            offset: 64,
            field: "records",
            message: "no detections on channels with a detector state".into(),
        }
        .into());
    }
    let local = |x: f64, i: usize| -> Option<i64> {
        let y = x - gates[i].0;
        let k = y.round();
        ((y - k).abs() <= gates[i].1).then_some(k as i64)
    };

    // Step 3: Alice's window, Bob's clicks around it, one correlation per detector.
    let span = (x_max - x_min).max(1.0);
    let min_rate = hist
        .iter()
        .map(|h| h.iter().sum::<u64>() as f64 / span)
        .fold(f64::MAX, f64::min);
    let window = opts
        .window_slots
        .unwrap_or_else(|| (1500.0 / min_rate.max(1e-12)).clamp(4096.0, (1u64 << 24) as f64) as u64)
        .min(alice_total_slots / 4)
        .max(64);
    let centre = ((x_min + x_max) / 2.0).max(0.0) as u64;
    let w0 = centre
        .saturating_sub(window / 2)
        .min(alice_total_slots.saturating_sub(window));
    ch.send(
        &Message::SyncRequest {
            first_slot: w0,
            slots: window,
        },
        ledger,
    )?;
    let (bases, values) = match ch.recv(ledger)? {
        Message::SyncWindow {
            first_slot,
            bases,
            values,
        } if first_slot == w0 && bases.len() as u64 == window && values.len() as u64 == window => {
            (bases, values)
        }
        Message::SyncWindow { .. } => {
            return Err(crate::error::ProtocolError::Malformed(
                "sync window does not match the request".into(),
            )
            .into());
        }
        other => return Err(unexpected("SyncWindow", &other)),
    };
    let d = opts.max_offset_slots as i64;
    let lo = w0 as i64 - d;
    let len = window as usize + 2 * d as usize;
    let mut clicks: Vec<Vec<usize>> = vec![Vec::new(); detectors.len()];
    for r in records(log) {
        let r = r?;
        if r.kind != RecordKind::Detection || is_sync(&r) {
            continue;
        }
        let Some(i) = slot_of(r.channel) else {
            continue;
        };
        if let Some(k) = local(clock.x(r.time), i) {
            let u = k - lo;
            if u >= 0 && (u as usize) < len {
                clicks[i].push(u as usize);
            }
        }
    }
    let m = (len + window as usize).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(m);
    let ifft = planner.plan_fft_inverse(m);
    let alice_fft = |basis: Basis| -> Vec<Complex<f64>> {
        let mut a = vec![Complex::new(0.0, 0.0); m];
        for (v, av) in a.iter_mut().enumerate().take(window as usize) {
            if Basis::from_bit(bases.get(v)) == basis {
                av.re = if values.get(v) { -1.0 } else { 1.0 };
            }
        }
        fft.process(&mut a);
        a
    };
    let a_fft = [alice_fft(Basis::Z), alice_fft(Basis::X)];
    let mut det_reports = Vec::new();
    let mut offsets = Vec::new();
    for (i, &(chan, state)) in detectors.iter().enumerate() {
        let mut b = vec![Complex::new(0.0, 0.0); m];
        for &u in &clicks[i] {
            b[u].re += 1.0;
        }
        fft.process(&mut b);
        let a = &a_fft[usize::from(state.basis == Basis::X)];
        let sign = if state.value == 1 { -1.0 } else { 1.0 };
        for (x, y) in b.iter_mut().zip(a) {
            *x = y.conj() * *x * sign;
        }
        ifft.process(&mut b);
        let corr: Vec<f64> = b[..=2 * d as usize]
            .iter()
            .map(|c| c.re / m as f64)
            .collect();
        let (g, &peak) = corr
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .expect("non-empty");
        let n = corr.len() as f64;
        let mean = corr.iter().sum::<f64>() / n;
        let sd = (corr.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-9);
        let significance = (peak - mean) / sd;
        let offset = d - g as i64;
        if significance < opts.min_significance {
            return Err(crate::error::ProtocolError::Malformed(format!(
                "time synchronisation: no significant slot offset for detector {chan} ({significance:.1} σ < {}; {} clicks in the search range): check the slot period, the clock source and --max-offset-slots",
                opts.min_significance,
                clicks[i].len()
            ))
            .into());
        }
        offsets.push(offset);
        det_reports.push((chan, state, offset, significance, clicks[i].len() as u64));
    }
    ch.send(
        &Message::SyncDone {
            offsets: offsets.iter().map(|&o| o as u64).collect(),
        },
        ledger,
    )?;

    // Step 4: write Bob's detections in Alice's slots, sorted.
    let mut out_meta = DetectionMeta {
        role: meta.role.clone(),
        source_format: format!("{} (synchronised)", meta.source_format),
        channels: detectors
            .iter()
            .map(|&(id, s)| ChannelInfo {
                id,
                name: meta
                    .channels
                    .iter()
                    .find(|c| c.id == id)
                    .map_or_else(|| format!("in{id}"), |c| c.name.clone()),
                kind: ChannelKind::Detector,
                state: Some(s),
            })
            .collect(),
        total_slots: Some(alice_total_slots),
        extra: Default::default(),
    };
    out_meta.extra.insert(
        "synchronised_from".into(),
        log.path().display().to_string().into(),
    );
    let header = FileHeader {
        version: (1, 0),
        flags: FLAG_SLOT_ANNOTATED | FLAG_TIME_SORTED,
        tick_num: (period_ps * 1e3).round() as u64,
        tick_den: 1_000_000_000_000_000,
        origin_unix_ns: i64::MIN,
        run_id: log.header().run_id,
        metadata_json: serde_json::to_string(&out_meta).expect("metadata serializes"),
        header_len: 0,
    };
    let mut w = DetectionLogWriter::create(out, &header, true)?;
    let mut heap: BinaryHeap<std::cmp::Reverse<(i64, u16)>> = BinaryHeap::new();
    let mut buf = Vec::with_capacity(1 << 16);
    let (mut n_out, mut gated, mut in_win, mut outside) = (0u64, 0u64, 0u64, 0u64);
    let mut inside = vec![0u64; detectors.len()];
    let mut total = vec![0u64; detectors.len()];
    let mut last_out = i64::MIN;
    let mut flush = |heap: &mut BinaryHeap<std::cmp::Reverse<(i64, u16)>>,
                     below: i64,
                     buf: &mut Vec<Record>,
                     w: &mut DetectionLogWriter|
     -> Result<()> {
        while let Some(std::cmp::Reverse((s, _))) = heap.peek() {
            if *s >= below {
                break;
            }
            let std::cmp::Reverse((s, c)) = heap.pop().expect("peeked");
            debug_assert!(s >= last_out);
            last_out = s;
            buf.push(Record::detection(s, c, 0));
            if buf.len() >= 1 << 16 {
                w.write_records(buf)?;
                buf.clear();
            }
        }
        Ok(())
    };
    for r in records(log) {
        let r = r?;
        if r.kind != RecordKind::Detection || is_sync(&r) {
            continue;
        }
        let Some(i) = slot_of(r.channel) else {
            continue;
        };
        total[i] += 1;
        let Some(k) = local(clock.x(r.time), i) else {
            gated += 1;
            continue;
        };
        inside[i] += 1;
        let s = k + offsets[i];
        if s < 0 || s as u64 >= alice_total_slots {
            outside += 1;
            continue;
        }
        if (s as u64) >= w0 && (s as u64) < w0 + window {
            in_win += 1;
            continue;
        }
        heap.push(std::cmp::Reverse((s, r.channel)));
        n_out += 1;
        if heap.len() > 4096 {
            flush(&mut heap, s - 1024, &mut buf, &mut w)?;
        }
    }
    flush(&mut heap, i64::MAX, &mut buf, &mut w)?;
    w.write_records(&buf)?;
    w.finish()?;
    let to_ps = clock.period * tick_ps;
    let detectors_report = det_reports
        .into_iter()
        .enumerate()
        .map(
            |(i, (chan, state, offset, significance, searched))| DetectorSync {
                channel: chan,
                state: format!("{:?}{}", state.basis, state.value),
                gate_center_ps: gates[i].0 * to_ps,
                gate_half_width_ps: gates[i].1 * to_ps,
                jitter_ps: gates[i].2 * to_ps,
                gate_efficiency: if total[i] > 0 {
                    inside[i] as f64 / total[i] as f64
                } else {
                    0.0
                },
                offset_slots: offset,
                significance,
                events_searched: searched,
            },
        )
        .collect();
    Ok(SyncReport {
        clock_source: source,
        nominal_period_ps: period_ps,
        period_ps: to_ps,
        drift_ppm: (to_ps / period_ps - 1.0) * 1e6,
        clock_offset_ps: (clock.origin + clock.period * (gates[0].0 - offsets[0] as f64)) * tick_ps,
        clock_residual_ps: residual * tick_ps,
        detectors: detectors_report,
        window_first_slot: w0,
        window_slots: window,
        disclosed_bits: 2 * window,
        detections_in: n_in,
        detections_out: n_out,
        gated_out: gated,
        in_window: in_win,
        outside_run: outside,
    })
}

/// Alice's side: answer Bob's window request from her preparation log.
pub fn alice_sync(
    ch: &mut ClassicalChannel,
    ledger: &mut LeakageLedger,
    prep: &PrepLog,
) -> Result<Vec<i64>> {
    let (first, n) = match ch.recv(ledger)? {
        Message::SyncRequest { first_slot, slots } => (first_slot, slots),
        other => return Err(unexpected("SyncRequest", &other)),
    };
    if n == 0 || first.checked_add(n).is_none_or(|e| e > prep.total_slots()) || n > 1 << 26 {
        return Err(crate::error::ProtocolError::Malformed(format!(
            "sync window [{first}, {first}+{n}) outside the run of {} slots",
            prep.total_slots()
        ))
        .into());
    }
    let mut bases = BitVec::zeros(n as usize);
    let mut values = BitVec::zeros(n as usize);
    let mut b = prep.block_of_slot(first).ok_or_else(|| {
        Error::from(crate::error::ProtocolError::Malformed(format!(
            "slot {first} not in the log"
        )))
    })?;
    let mut block = prep.block(b)?;
    for i in 0..n {
        let s = first + i;
        if !block.contains(s) {
            b += 1;
            block = prep.block(b)?;
        }
        let sym = block.symbol(s);
        bases.set(i as usize, sym.basis == Basis::X);
        values.set(i as usize, sym.value);
    }
    ch.send(
        &Message::SyncWindow {
            first_slot: first,
            bases,
            values,
        },
        ledger,
    )?;
    match ch.recv(ledger)? {
        Message::SyncDone { offsets } => Ok(offsets.into_iter().map(|o| o as i64).collect()),
        other => Err(unexpected("SyncDone", &other)),
    }
}
