//! Parameter estimation: the error rate of the key basis from a disclosed random sample, the
//! test-basis statistics per intensity class, and the finite-key bound they feed.

pub mod finite_key;
pub mod qber;
