//! Persistent-pool and local-slot operation sequences on a simulated kernel.
//! The checks are in `fuzz_support::kmap_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_support::kmap_ops(data));
