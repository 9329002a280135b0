pub mod error;
pub mod kernels;
pub mod bits;
