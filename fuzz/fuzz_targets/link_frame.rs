#![no_main]
//! Fuzz target `link_frame`: see `qkd_distill::fuzzing::link_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::link_frame(data);
});
