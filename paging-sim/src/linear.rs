//! Reads and writes by linear address through a simulated CPU, as code
//! running on it would make them.

use std::vec::Vec;

use super::fault::{Access, PageFault};
use super::mmu::Mmu;
use paging_core::addr::{PAGE_SIZE, PhysAddr, PhysFrame, VirtAddr};

impl Mmu<'_> {
    /// Translate every page `len` bytes from `va` touch, before any byte is
    /// accessed (an access that faults on its second page changes nothing).
    fn chunks(
        &self,
        va: VirtAddr,
        len: usize,
        access: Access,
    ) -> Result<Vec<(PhysAddr, usize)>, PageFault> {
        let mut out = Vec::new();
        let mut addr = va.as_u32();
        let mut left = len;
        while left > 0 {
            let in_page = (PAGE_SIZE - u64::from(addr) % PAGE_SIZE) as usize;
            let n = left.min(in_page);
            out.push((self.translate(VirtAddr::new(addr), access)?.pa, n));
            addr = addr.wrapping_add(n as u32);
            left -= n;
        }
        Ok(out)
    }

    /// Read `buf.len()` bytes at `va` with `access` (its `write` is ignored;
    /// set `exec` to model an instruction fetch).
    pub fn read_bytes_as(
        &self,
        va: VirtAddr,
        buf: &mut [u8],
        access: Access,
    ) -> Result<(), PageFault> {
        let access = Access {
            write: false,
            ..access
        };
        let mut pos = 0;
        for (pa, n) in self.chunks(va, buf.len(), access)? {
            let frame = PhysFrame::containing_address(pa);
            let off = (pa.as_u64() % PAGE_SIZE) as usize;
            self.ram().read_in_frame(frame, off, &mut buf[pos..pos + n]);
            pos += n;
        }
        Ok(())
    }

    /// Write `buf` at `va` with `access` (its `write` is forced on).
    pub fn write_bytes_as(
        &self,
        va: VirtAddr,
        buf: &[u8],
        access: Access,
    ) -> Result<(), PageFault> {
        let access = Access {
            write: true,
            ..access
        };
        let mut pos = 0;
        for (pa, n) in self.chunks(va, buf.len(), access)? {
            let frame = PhysFrame::containing_address(pa);
            let off = (pa.as_u64() % PAGE_SIZE) as usize;
            self.ram().write_in_frame(frame, off, &buf[pos..pos + n]);
            pos += n;
        }
        Ok(())
    }

    /// Supervisor read of `buf.len()` bytes at `va`.
    pub fn read_bytes(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), PageFault> {
        self.read_bytes_as(va, buf, Access::READ)
    }

    /// Supervisor write of `buf` at `va`.
    pub fn write_bytes(&self, va: VirtAddr, buf: &[u8]) -> Result<(), PageFault> {
        self.write_bytes_as(va, buf, Access::WRITE)
    }

    /// Supervisor read of the byte at `va`.
    pub fn read_u8(&self, va: VirtAddr) -> Result<u8, PageFault> {
        let mut b = [0];
        self.read_bytes(va, &mut b)?;
        Ok(b[0])
    }

    /// Supervisor write of the byte at `va`.
    pub fn write_u8(&self, va: VirtAddr, value: u8) -> Result<(), PageFault> {
        self.write_bytes(va, &[value])
    }

    /// Supervisor read of the little-endian `u32` at `va` (any alignment).
    pub fn read_u32(&self, va: VirtAddr) -> Result<u32, PageFault> {
        self.read_u32_as(va, Access::READ)
    }

    /// Supervisor write of the little-endian `u32` at `va` (any alignment).
    pub fn write_u32(&self, va: VirtAddr, value: u32) -> Result<(), PageFault> {
        self.write_u32_as(va, value, Access::WRITE)
    }

    /// Read the little-endian `u32` at `va` with `access`.
    pub fn read_u32_as(&self, va: VirtAddr, access: Access) -> Result<u32, PageFault> {
        let mut b = [0; 4];
        self.read_bytes_as(va, &mut b, access)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Write the little-endian `u32` at `va` with `access`.
    pub fn write_u32_as(&self, va: VirtAddr, value: u32, access: Access) -> Result<(), PageFault> {
        self.write_bytes_as(va, &value.to_le_bytes(), access)
    }
}
