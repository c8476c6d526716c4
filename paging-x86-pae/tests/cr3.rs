//! CR3 values for a PDPT.

use paging_core::{ErrorKind, PagingError, PhysAddr};
use paging_x86_pae::{Cr3, Cr3Error};

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

#[test]
fn cr3_holds_a_32_byte_aligned_pdpt_address() {
    for addr in [0x1000, 0x1020, 0x0012_3FE0, 0xFFFF_FFE0] {
        let cr3 = Cr3::new(pa(addr)).unwrap();
        assert_eq!(cr3.bits() as u64, addr);
        assert_eq!(cr3.pdpt(), pa(addr));
    }
}

#[test]
fn cr3_rejects_unaligned_and_high_pdpts() {
    for addr in [0x1010, 0x1004, 0x101F] {
        let err = Cr3::new(pa(addr)).unwrap_err();
        assert_eq!(
            err,
            Cr3Error::Unaligned {
                addr: pa(addr),
                align: 32
            }
        );
        assert_eq!(err.kind(), ErrorKind::Unaligned);
    }
    let err = Cr3::new(pa(0x1_0000_0000)).unwrap_err();
    assert_eq!(
        err,
        Cr3Error::AboveFourGiB {
            addr: pa(0x1_0000_0000)
        }
    );
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    assert!(err.to_string().contains("0x100000000"));
}
