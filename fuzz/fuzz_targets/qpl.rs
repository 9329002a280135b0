#![no_main]
//! Fuzz target `qpl`: see `qkd_distill::fuzzing::qpl`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::qpl(data);
});
