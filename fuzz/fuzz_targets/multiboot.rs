//! The example kernel's Multiboot parser and memory-map normaliser.
//! The checks are in `fuzz_support::multiboot`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_support::multiboot(data));
