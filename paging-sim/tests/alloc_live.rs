//! Every test allocator reports live frames the same way (issue 22): `live`
//! is a count, `is_live` asks about one frame, `live_frames` lists them in
//! address order.

use paging_core::{FrameAllocator, PhysAddr, PhysFrame, Zone};
use paging_sim::{ScriptedAllocator, ZonedAllocator};

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new_truncate(addr))
}

#[test]
fn scripted_and_zoned_allocators_report_live_frames_alike() {
    let mut zoned = ZonedAllocator::new(0x10_0000..0x10_3000, 0x1_0000_0000..0x1_0000_1000);
    let mut scripted =
        ScriptedAllocator::new([frame(0x10_0000), frame(0x10_1000), frame(0x10_2000)]);
    let mut from_zoned = Vec::new();
    let mut from_scripted = Vec::new();
    for _ in 0..3 {
        from_zoned.push(zoned.allocate_frame(Zone::Lowmem).unwrap());
        from_scripted.push(scripted.allocate_frame(Zone::Lowmem).unwrap());
    }
    from_zoned.sort();
    from_scripted.sort();
    zoned.deallocate_frame(from_zoned[1]);
    scripted.deallocate_frame(from_scripted[1]);

    assert_eq!((zoned.live(), scripted.live()), (2, 2));
    assert_eq!(zoned.live_frames(), [from_zoned[0], from_zoned[2]]);
    assert_eq!(scripted.live_frames(), [from_scripted[0], from_scripted[2]]);
    assert!(!zoned.is_live(from_zoned[1]) && zoned.is_live(from_zoned[0]));
    assert!(!scripted.is_live(from_scripted[1]) && scripted.is_live(from_scripted[2]));
    let numbers: Vec<u64> = scripted.live_set().iter().copied().collect();
    assert_eq!(
        numbers,
        [from_scripted[0].number(), from_scripted[2].number()]
    );
}
