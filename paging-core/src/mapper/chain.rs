//! Frames taken from the allocator before a multi-table operation starts, so
//! that running out of memory is detected before anything is written.
//!
//! The list is threaded through the frames themselves (the first 8 bytes of
//! each hold the next frame's number), so it needs no storage of its own and
//! no `alloc`.
//!
//! A frame given back unused (an operation that fails before it writes, or
//! one that needed fewer tables than reserved) has its link cleared first:
//! its first 8 bytes are zero, and the other 4088 bytes are as the
//! allocator handed them out. No frame number of ours is left in memory the
//! allocator gets back. (The first 8 bytes' old contents cannot be put back:
//! keeping them would need the storage the chain exists to avoid. A frame
//! the allocator hands out is the caller's to write, so this is the one
//! trace a failed operation leaves, and only in frames no table links.)

use crate::access::{AccessError, TableAccess, reach};
use crate::addr::PhysFrame;
use crate::alloc::{FrameAllocator, Zone};
use crate::table::RawTable;

const END: u64 = u64::MAX;

/// A stack of reserved frames.
pub(crate) struct FrameChain {
    head: Option<PhysFrame>,
}

/// Why a chain could not be filled.
pub(crate) enum ChainError {
    OutOfFrames,
    /// The allocator returned a frame a table entry cannot point at.
    OutOfReach(PhysFrame),
    Access(AccessError),
}

impl FrameChain {
    pub(crate) const fn new() -> Self {
        Self { head: None }
    }

    /// Take `count` frames from `zone`, each one a table entry can point at
    /// (below 2^`max_bits`). On failure every frame taken so far is given
    /// back and the chain is empty.
    pub(crate) fn fill<A, F>(
        &mut self,
        access: &A,
        alloc: &mut F,
        zone: Zone,
        count: usize,
        max_bits: u32,
    ) -> Result<(), ChainError>
    where
        A: TableAccess + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        for _ in 0..count {
            let Some(frame) = alloc.allocate_frame(zone) else {
                self.release(access, alloc);
                return Err(ChainError::OutOfFrames);
            };
            if !frame.start_address().fits_bits(max_bits) {
                // SAFETY: just allocated and never linked or used.
                unsafe { alloc.deallocate_frame(frame) };
                self.release(access, alloc);
                return Err(ChainError::OutOfReach(frame));
            }
            if let Err(e) = self.push(access, frame) {
                // SAFETY: just allocated; `push` failed, so it is not in the
                // chain and nothing links it.
                unsafe { alloc.deallocate_frame(frame) };
                self.release(access, alloc);
                return Err(ChainError::Access(e));
            }
        }
        Ok(())
    }

    fn push<A: TableAccess + ?Sized>(
        &mut self,
        access: &A,
        frame: PhysFrame,
    ) -> Result<(), AccessError> {
        let next = self.head.map_or(END, PhysFrame::number);
        let t = reach(access, frame)?;
        t.store32(0, next as u32);
        t.store32(1, (next >> 32) as u32);
        self.head = Some(frame);
        Ok(())
    }

    /// The next reserved frame (its first 8 bytes hold chain data; the caller
    /// overwrites the whole frame).
    pub(crate) fn pop<A: TableAccess + ?Sized>(
        &mut self,
        access: &A,
    ) -> Result<Option<PhysFrame>, AccessError> {
        let Some(frame) = self.head else {
            return Ok(None);
        };
        let t = reach(access, frame)?;
        let next = t.load32(0) as u64 | (t.load32(1) as u64) << 32;
        self.head = if next == END {
            None
        } else {
            PhysFrame::from_number(next).ok()
        };
        Ok(Some(frame))
    }

    /// Give every remaining frame back to `alloc`, its link words cleared
    /// (zero). If a frame cannot be reached to read its link, the rest of
    /// the chain is lost to this call but the frame itself is still
    /// returned (its link is then left as it is: the frame cannot be
    /// reached to clear it either).
    pub(crate) fn release<A, F>(&mut self, access: &A, alloc: &mut F)
    where
        A: TableAccess + ?Sized,
        F: FrameAllocator + ?Sized,
    {
        while let Some(frame) = self.head {
            match self.pop(access) {
                Ok(Some(f)) => {
                    if let Ok(t) = reach(access, f) {
                        t.store32(0, 0);
                        t.store32(1, 0);
                    }
                    // SAFETY: the chain holds frames this allocator handed
                    // out for tables never linked; each leaves the chain
                    // here.
                    unsafe { alloc.deallocate_frame(f) }
                }
                Ok(None) => break,
                Err(_) => {
                    // SAFETY: as above, for the head of the chain.
                    unsafe { alloc.deallocate_frame(frame) };
                    self.head = None;
                }
            }
        }
    }
}
