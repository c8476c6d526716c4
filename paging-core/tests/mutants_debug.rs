//! What the `Debug` impls of the mapper and the kernel-sync registry print
//! (their fields, not an empty string), and the registry's accessors.
//! Written for mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).
mod mapper_support;

use mapper_support::{machine, va};
use paging_core::sync::KernelSync;
use paging_core::{NativeHooks, PagingMode};
use paging_x86_2level::TwoLevel;
use paging_x86_pae::Pae;

fn mapper_debug_names_its_fields<M: PagingMode>() {
    let rig = machine::<M>();
    let text = format!("{:?}", rig.mapper);
    assert!(text.starts_with("Mapper {"), "{text}");
    let root = format!("root: {:?}", rig.mapper.root());
    let mode = format!("mode: {:?}", M::NAME);
    for field in [
        "walker: Walker {",
        &mode,
        &root,
        "hooks",
        "pte_zone: Lowmem",
    ] {
        assert!(text.contains(field), "{field} missing in {text}");
    }
}

fn kernel_sync_debug_counts_directories<M: PagingMode>() {
    let rig = machine::<M>();
    let reference = rig.mapper.root();
    let sync = KernelSync::<M, _, _, 4>::new_isolated(
        reference,
        va(0xC000_0000),
        *rig.mapper.access(),
        NativeHooks,
    );
    assert_eq!(sync.reference(), reference);
    assert_eq!(sync.registered(), 0);
    let text = format!("{sync:?}");
    assert!(text.starts_with("KernelSync {"), "{text}");
    assert!(text.contains("registered: 0"), "{text}");
    assert!(text.contains("kernel_start"), "{text}");
}

#[test]
fn two_level() {
    mapper_debug_names_its_fields::<TwoLevel>();
    kernel_sync_debug_counts_directories::<TwoLevel>();
}

#[test]
fn pae() {
    mapper_debug_names_its_fields::<Pae>();
    kernel_sync_debug_counts_directories::<Pae>();
}
