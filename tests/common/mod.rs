//! Helpers shared by the integration tests.
#![allow(dead_code)]

use qkd_distill::progress::NoProgress;
use qkd_distill::sim::link::LinkParams;
use qkd_distill::sim::{SimulationSummary, simulate_decoy_bb84};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "qkd-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Simulate into `dir`.
pub fn simulate(dir: &Path, pulses: u64, seed: u64, params: &LinkParams) -> SimulationSummary {
    simulate_decoy_bb84(params, pulses, seed, dir, true, &NoProgress).expect("simulation")
}

/// A short link (5 km) that gives enough detections for a key from few pulses.
pub fn short_link() -> LinkParams {
    LinkParams {
        distance_km: 5.0,
        ..LinkParams::default()
    }
}

/// Flip one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}
