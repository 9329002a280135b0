#![no_main]
//! Fuzz target `alist`: see `qkd_distill::fuzzing::alist`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::alist(data);
});
