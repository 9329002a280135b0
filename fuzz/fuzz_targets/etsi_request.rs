#![no_main]
//! Fuzz target `etsi_request`: see `qkd_distill::fuzzing::etsi_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::etsi_request(data);
});
