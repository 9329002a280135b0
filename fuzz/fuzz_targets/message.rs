#![no_main]
//! Fuzz target `message`: see `qkd_distill::fuzzing::message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::message(data);
});
