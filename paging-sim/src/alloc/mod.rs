//! Frame allocators for tests, implementing [`FrameAllocator`].
//!
//! Both keep a ledger of every frame handed out, so a test can assert that
//! nothing leaked ([`ZonedAllocator::live`]), that nothing was freed twice
//! ([`ZonedAllocator::double_frees`]), and can make the *n*-th allocation
//! fail ([`ZonedAllocator::fail_after`]) to reach every out-of-frames path.
//! Both are deterministic: the same calls give the same frames every run.
//!
//! [`FrameAllocator`]: paging_core::alloc::FrameAllocator

mod ledger;
mod pool;
mod scattered;
mod zoned;

pub use scattered::{Contiguous, ScatteredAllocator};
pub use zoned::ZonedAllocator;
