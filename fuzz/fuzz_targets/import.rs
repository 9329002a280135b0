#![no_main]
//! Fuzz target `import`: see `qkd_distill::fuzzing::import`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    qkd_distill::fuzzing::import(data);
});
