#![no_main]
//! Fuzz target `qdl`: see `qkd_distill::fuzzing::qdl`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::qdl(data);
});
