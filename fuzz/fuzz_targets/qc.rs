#![no_main]
//! Fuzz target `qc`: see `qkd_distill::fuzzing::qc`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::qc(data);
});
