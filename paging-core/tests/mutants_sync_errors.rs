//! What each kernel-sync error says and which kind it is. Written for
//! mutants that `cargo xtask mutants` found no test noticed
//! (docs/testing.md).

use paging_core::{
    AccessError, AttrError, ErrorKind, PagingError, PhysAddr, PhysFrame, SyncError, VirtAddr,
};

#[test]
fn every_sync_error_says_what_happened() {
    let root = PhysAddr::new(0x5000).unwrap();
    let cases = [
        (
            SyncError::RegistryFull { capacity: 4 },
            "registry full (4 directories)",
            ErrorKind::Exhausted,
        ),
        (
            SyncError::NotRegistered(root),
            "directory 0x5000 is not registered",
            ErrorKind::InvalidState,
        ),
        (
            SyncError::AlreadyRegistered(root),
            "directory 0x5000 is already registered",
            ErrorKind::InvalidState,
        ),
        (
            SyncError::Conflict {
                root,
                va: VirtAddr::new(0xC040_0000),
            },
            "directory 0x5000 maps 0xc0400000 differently from the reference",
            ErrorKind::AlreadyMapped,
        ),
        (
            SyncError::Access(AccessError::NoSlot),
            "no temporary mapping slot is free",
            ErrorKind::Exhausted,
        ),
        (
            SyncError::NotReference {
                root,
                reference: PhysAddr::new(0x9000).unwrap(),
            },
            "the mapper's root 0x5000 is not the reference directory 0x9000",
            ErrorKind::InvalidState,
        ),
        (
            SyncError::PrivateKernelPmd {
                root,
                va: VirtAddr::new(0xC060_0000),
            },
            "directory 0x5000 has a private kernel PMD at 0xc0600000: its large pages cannot change",
            ErrorKind::Unsupported,
        ),
        (
            SyncError::Attr(AttrError::OutOfFrames),
            "out of frames for page tables",
            ErrorKind::OutOfMemory,
        ),
    ];
    let unreachable = AccessError::Unreachable(PhysFrame::from_number(7).unwrap());
    assert_eq!(
        SyncError::Access(unreachable).to_string(),
        unreachable.to_string()
    );
    assert_eq!(
        SyncError::Access(unreachable).kind(),
        ErrorKind::Unreachable
    );
    for (error, text, kind) in cases {
        assert_eq!(error.to_string(), text);
        assert_eq!(error.kind(), kind, "{error}");
    }
    assert_eq!(
        SyncError::from(AccessError::NoSlot),
        SyncError::Access(AccessError::NoSlot)
    );
}
