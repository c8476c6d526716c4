//! The kernel's self-tests, in the order they run.

mod mem_intrinsics;
mod memory_map;
mod page_faults;
mod platform;

use crate::test::Test;

/// Every self-test.
pub const ALL: &[Test] = &[
    Test {
        name: "serial_loopback_echoes_a_byte",
        run: platform::serial_loopback_echoes_a_byte,
    },
    Test {
        name: "kernel_runs_in_higher_half_with_write_protect",
        run: platform::kernel_runs_in_higher_half_with_write_protect,
    },
    Test {
        name: "cpu_has_paging_features_for_mode",
        run: platform::cpu_has_paging_features_for_mode,
    },
    Test {
        name: "memory_intrinsics_copy_fill_and_compare",
        run: mem_intrinsics::memory_intrinsics_copy_fill_and_compare,
    },
    Test {
        name: "multiboot_memory_map_is_sane",
        run: memory_map::multiboot_memory_map_is_sane,
    },
    Test {
        name: "memory_map_normalises_unsorted_overlapping_regions",
        run: memory_map::normalises_unsorted_overlapping_regions,
    },
    Test {
        name: "multiboot_parser_rejects_malformed_maps",
        run: memory_map::parser_rejects_malformed_maps,
    },
    Test {
        name: "read_of_unmapped_address_faults_not_present",
        run: page_faults::read_of_unmapped_address_faults_not_present,
    },
    Test {
        name: "low_identity_mapping_is_gone",
        run: page_faults::low_identity_mapping_is_gone,
    },
    Test {
        name: "stack_guard_page_is_unmapped",
        run: page_faults::stack_guard_page_is_unmapped,
    },
    Test {
        name: "write_to_read_only_kernel_page_faults",
        run: page_faults::write_to_read_only_kernel_page_faults,
    },
];
