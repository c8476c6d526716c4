//! Mapper operation sequences on the simulated machine (both modes).
//! The checks are in `fuzz_support::mapper_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_support::mapper_ops(data));
