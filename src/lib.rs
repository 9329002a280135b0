//! # qkd-distill
//!
//! Classical post-processing for quantum key distribution: from Alice's preparation log and
//! Bob's detection log to identical, provably secret keys.
//!
//! ```text
//!  simulator (sim) ──► detection log (.qdl, mmapped)      preparation log (.qpl, mmapped)
//!                             │  Bob                               │  Alice
//!                             ▼                                    ▼
//!  stages (threads, bounded queues; blocks carry a BlockId; both parties run the same stages)
//!  sifting ─► parameter estimation ─► error correction ─► verification ─► privacy amplification ─► key store
//!  (pext        (QBER sample, decoy     (Cascade, worker    (GF(2^64)        (Toeplitz; length from the
//!   compaction)  bounds, Lim 2014)       pool, in-order)     poly hash)        bound minus the ledger)
//!        ▲                ▲                     ▲                 ▲                  ▲
//!        └──── classical channel: typed messages; every disclosure enters the ledger ─┘
//! ```
//!
//! Module map (dependency direction `kernels ← bits ← algorithms ← stages ← engine`):
//!
//! * [`kernels`]: all SIMD and unsafe arithmetic, chosen once at run time; [`kernels::portable`]
//!   is the oracle.
//! * [`bits`]: packed bit vectors, the lingua franca of the stages.
//! * [`io`]: the `.qdl` / `.qpl` formats (memory-mapped reading), atomic output files.
//! * [`sim`]: the seeded decoy-state BB84 link simulator.
//! * Algorithms, free of threads and sockets: [`sifting`], [`parameter_estimation`],
//!   [`error_correction`], [`verification`], [`privacy_amplification`].
//! * [`classical`]: messages, wire encoding, transports; [`ledger`]: disclosure accounting.
//! * [`pipeline`]: a generic stage runtime (knows nothing about QKD); [`stages`]: the adapters;
//!   [`block`]: blocks and key typestates; [`engine`]: assembles a batch run; [`keystore`]:
//!   key files.
//!
//! The library has no CLI dependencies; the `qkd` binary lives in `src/main.rs` and `src/cli/`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod bits;
pub mod block;
pub mod classical;
pub mod config;
pub mod engine;
pub mod error;
pub mod error_correction;
pub mod fuzzing;
pub mod io;
pub mod kernels;
pub mod keyrate;
pub mod keystore;
pub mod keyuse;
pub mod kme;
pub mod ledger;
pub mod monitors;
pub mod parameter_estimation;
pub mod party;
pub mod pipeline;
pub mod privacy_amplification;
pub mod progress;
pub mod protocol;
pub mod protocols;
pub mod rng;
pub mod sifting;
pub mod sim;
pub mod site;
pub mod stages;
pub mod sync;
pub mod verification;
