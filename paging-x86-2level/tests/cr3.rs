//! CR3 values for a page directory.

use paging_core::{ErrorKind, PagingError, PhysAddr};
use paging_x86_2level::{Cr3, Cr3Error, Cr3Flags};

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

#[test]
fn cr3_holds_the_directory_and_pwt_pcd() {
    let cr3 = Cr3::new(pa(0x0012_3000), Cr3Flags::empty()).unwrap();
    assert_eq!(cr3.bits(), 0x0012_3000);
    assert_eq!(cr3.directory(), pa(0x0012_3000));
    let cr3 = Cr3::new(
        pa(0xFFFF_F000),
        Cr3Flags::WRITE_THROUGH | Cr3Flags::CACHE_DISABLE,
    )
    .unwrap();
    assert_eq!(cr3.bits(), 0xFFFF_F000 | 1 << 3 | 1 << 4);
    assert_eq!(cr3.directory(), pa(0xFFFF_F000));
    assert_eq!(
        cr3.flags(),
        Cr3Flags::WRITE_THROUGH | Cr3Flags::CACHE_DISABLE
    );
}

#[test]
fn cr3_rejects_unaligned_and_high_directories() {
    let err = Cr3::new(pa(0x0012_3800), Cr3Flags::empty()).unwrap_err();
    assert_eq!(
        err,
        Cr3Error::Unaligned {
            addr: pa(0x0012_3800),
            align: 4096
        }
    );
    assert_eq!(err.kind(), ErrorKind::Unaligned);
    assert!(err.to_string().contains("0x123800"));

    let err = Cr3::new(pa(0x1_0000_0000), Cr3Flags::empty()).unwrap_err();
    assert_eq!(
        err,
        Cr3Error::AboveFourGiB {
            addr: pa(0x1_0000_0000)
        }
    );
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    assert!(err.to_string().contains("4 GiB"));
}
