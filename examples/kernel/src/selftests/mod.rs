//! The kernel's self-tests, in the order they run.

mod fixmap;
mod flush_policies;
mod framebuffer;
mod fuzz;
mod global_pages;
mod hardening;
pub mod harness;
mod harvest;
mod highmem;
mod hostile;
mod kernel_sync;
mod kernel_walk;
mod kmap;
mod mem_intrinsics;
mod memory_access;
mod memory_map;
mod page_faults;
mod platform;
mod processes;
mod pte_highmem;
mod smp;
mod smp_kmap;
mod smp_kmap_deadlock;
mod smp_kmap_local;
mod smp_races;
mod smp_shootdown;
mod soak;
mod split;
mod vmap;

use crate::selftests::harness::Test;

/// The soak alone: what a boot with `soak.seconds=N` runs instead of
/// [`ALL`] (`cargo xtask soak`).
pub const SOAK: &[Test] = &[Test {
    name: "soak_kmap_processes_and_nmis_on_every_cpu",
    run: soak::soak_kmap_processes_and_nmis_on_every_cpu,
}];

/// Whether the command line asks for the soak.
pub fn soak_requested(kernel: &crate::mm::kernel::Kernel) -> bool {
    soak::seconds(kernel).is_some()
}

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
        name: "smp_every_listed_cpu_is_online_in_the_kernel_tables",
        run: smp::smp_every_listed_cpu_is_online_in_the_kernel_tables,
    },
    Test {
        name: "smp_ap_stacks_have_guard_pages",
        run: smp::smp_ap_stacks_have_guard_pages,
    },
    Test {
        name: "smp_firmware_tables_agree",
        run: smp::smp_firmware_tables_agree,
    },
    Test {
        name: "smp_lazy_sync_race_on_a_fresh_vmalloc_entry",
        run: smp_races::smp_lazy_sync_race_on_a_fresh_vmalloc_entry,
    },
    Test {
        name: "smp_nmi_on_every_cpu_while_locks_are_held",
        run: smp_races::smp_nmi_on_every_cpu_while_locks_are_held,
    },
    Test {
        name: "smp_shootdown_no_cpu_reads_the_old_frame",
        run: smp_shootdown::smp_shootdown_no_cpu_reads_the_old_frame,
    },
    Test {
        name: "smp_kmap_storm_under_every_flush_policy",
        run: smp_kmap::smp_kmap_storm_under_every_flush_policy,
    },
    Test {
        name: "smp_local_kmaps_send_no_ipi_and_interrupts_map_nowait",
        run: smp_kmap_local::smp_local_kmaps_send_no_ipi_and_interrupts_map_nowait,
    },
    Test {
        name: "smp_two_kmap_deadlock_is_prevented_by_reservations",
        run: smp_kmap_deadlock::smp_two_kmap_deadlock_is_prevented_by_reservations,
    },
    Test {
        name: "process_runs_in_ring_3_and_makes_system_calls",
        run: processes::process_runs_in_ring_3_and_makes_system_calls,
    },
    Test {
        name: "process_demand_zero_64_processes_with_checksums",
        run: processes::process_demand_zero_64_processes_with_checksums,
    },
    Test {
        name: "process_fork_chain_cow_depth_8",
        run: processes::process_fork_chain_cow_depth_8,
    },
    Test {
        name: "process_killed_on_bad_access_others_finish",
        run: processes::process_killed_on_bad_access_others_finish,
    },
    Test {
        name: "process_preempt_while_holding_local_kmaps",
        run: processes::process_preempt_while_holding_local_kmaps,
    },
    Test {
        name: "process_page_tables_in_highmem_save_lowmem",
        run: processes::process_page_tables_in_highmem_save_lowmem,
    },
    Test {
        name: "process_working_set_harvest_counts_young_pages",
        run: harvest::process_working_set_harvest_counts_young_pages,
    },
    Test {
        name: "user_hostile_fork_bomb",
        run: hostile::user_hostile_fork_bomb,
    },
    Test {
        name: "user_hostile_exit_frees_every_private_page",
        run: hostile::user_hostile_exit_frees_every_private_page,
    },
    Test {
        name: "user_hostile_kmap_hold_is_capped",
        run: hostile::user_hostile_kmap_hold_is_capped,
    },
    Test {
        name: "user_hostile_sbrk_wrap_is_refused",
        run: hostile::user_hostile_sbrk_wrap_is_refused,
    },
    Test {
        name: "user_hostile_page_limit",
        run: hostile::user_hostile_page_limit,
    },
    Test {
        name: "user_hostile_zombies_reaped_with_their_parent",
        run: hostile::user_hostile_zombies_reaped_with_their_parent,
    },
    Test {
        name: "user_hostile_big_fork_is_refused_cleanly",
        run: hostile::user_hostile_big_fork_is_refused_cleanly,
    },
    Test {
        name: "user_hostile_console_flood_is_dropped_with_a_count",
        run: hostile::user_hostile_console_flood_is_dropped_with_a_count,
    },
    Test {
        name: "user_hostile_child_limit",
        run: hostile::user_hostile_child_limit,
    },
    Test {
        name: "user_hostile_spinner_cannot_starve_others",
        run: hostile::user_hostile_spinner_cannot_starve_others,
    },
    Test {
        name: "user_hostile_fpu_state_never_crosses_processes",
        run: hostile::user_hostile_fpu_state_never_crosses_processes,
    },
    Test {
        name: "user_hostile_ldt_selector_faults",
        run: hostile::user_hostile_ldt_selector_faults,
    },
    Test {
        name: "user_hostile_usercopy_is_the_only_path",
        run: hostile::user_hostile_usercopy_is_the_only_path,
    },
    Test {
        name: "user_hostile_smep_and_smap_guard_user_pages",
        run: hostile::user_hostile_smep_and_smap_guard_user_pages,
    },
    Test {
        name: "user_hostile_umip_hides_descriptor_tables",
        run: hostile::user_hostile_umip_hides_descriptor_tables,
    },
    Test {
        name: "syscall_fuzz_random_calls_pointers_and_fork_trees",
        run: fuzz::syscall_fuzz_random_calls_pointers_and_fork_trees,
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
        name: "stack_guard_pages_are_unmapped",
        run: page_faults::stack_guard_pages_are_unmapped,
    },
    Test {
        name: "write_to_read_only_kernel_page_faults",
        run: page_faults::write_to_read_only_kernel_page_faults,
    },
    Test {
        name: "write_to_kernel_text_faults_protection_write",
        run: hardening::write_to_kernel_text_faults_protection_write,
    },
    Test {
        name: "execute_from_data_faults_with_nx",
        run: hardening::execute_from_data_faults_with_nx,
    },
    Test {
        name: "fixmap_early_console_mapping_survives_the_handover",
        run: fixmap::early_console_mapping_survives_the_handover,
    },
    Test {
        name: "fixmap_kmap_window_tables_are_contiguous",
        run: fixmap::kmap_window_tables_are_contiguous,
    },
    Test {
        name: "frame_allocator_keeps_zones_and_contiguous_runs",
        run: kmap::frame_allocator_keeps_zones_and_contiguous_runs,
    },
    Test {
        name: "kmap_maps_lowmem_directly_and_highmem_through_slots",
        run: kmap::kmap_maps_lowmem_directly_and_highmem_through_slots,
    },
    Test {
        name: "local_kmap_slots_are_lifo_with_guard_pages",
        run: kmap::local_kmap_slots_are_lifo_with_guard_pages,
    },
    Test {
        name: "highmem_every_frame_kmapped_written_and_read_back",
        run: highmem::every_highmem_frame_is_kmapped_written_and_read_back,
    },
    Test {
        name: "pte_highmem_page_tables_in_highmem_save_lowmem",
        run: pte_highmem::page_tables_in_highmem_save_lowmem,
    },
    Test {
        name: "kmap_flush_policies_under_one_workload",
        run: flush_policies::flush_policies_under_one_workload,
    },
    Test {
        name: "kernel_sync_lazy_fault_fills_a_new_vmalloc_entry",
        run: kernel_sync::lazy_fault_fills_a_new_vmalloc_entry,
    },
    Test {
        name: "kernel_sync_lazy_fault_inside_an_nmi",
        run: kernel_sync::lazy_fault_inside_an_nmi,
    },
    Test {
        name: "kernel_sync_eager_publish_reaches_every_registered_space",
        run: kernel_sync::eager_publish_reaches_every_registered_space,
    },
    Test {
        name: "global_kernel_pages_survive_cr3_switch",
        run: global_pages::global_kernel_pages_survive_cr3_switch,
    },
    Test {
        name: "framebuffer_write_combining",
        run: framebuffer::framebuffer_write_combining,
    },
    Test {
        name: "vmap_ioremap_pairs_lazy_purge_against_eager",
        run: vmap::vmap_ioremap_pairs_lazy_purge_against_eager,
    },
    Test {
        name: "split_ro_after_init_page_is_read_only_after_boot",
        run: split::split_ro_after_init_page_is_read_only_after_boot,
    },
    Test {
        name: "split_ro_after_init_region_in_the_large_direct_map",
        run: split::split_ro_after_init_region_in_the_large_direct_map,
    },
    Test {
        name: "split_framebuffer_region_of_the_direct_map_is_write_combining",
        run: split::split_framebuffer_region_of_the_direct_map_is_write_combining,
    },
    Test {
        name: "kernel_mappings_are_w_xor_x_and_never_user",
        run: hardening::kernel_mappings_are_w_xor_x_and_never_user,
    },
];
