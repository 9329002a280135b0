#![no_main]
//! Fuzz target `tcp_stream`: see `qkd_distill::fuzzing::tcp_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::tcp_stream(data);
});
