//! PCI configuration space through the legacy ports 0xCF8 (address) and
//! 0xCFC (data), "configuration mechanism #1": enough to find a device and
//! read its BARs.

use crate::arch::io;

/// CONFIG_ADDRESS: enable bit, bus, device, function, register.
const CONFIG_ADDRESS: u16 = 0xCF8;
/// CONFIG_DATA: the addressed 32-bit register.
const CONFIG_DATA: u16 = 0xCFC;

/// A PCI function: bus, device (0-31), function (0-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Bus number.
    pub bus: u8,
    /// Device number on the bus.
    pub device: u8,
    /// Function number in the device.
    pub function: u8,
}

impl Function {
    /// The 32-bit configuration register at byte offset `offset` (aligned
    /// down to 4).
    pub fn read(self, offset: u8) -> u32 {
        let address = 1 << 31
            | u32::from(self.bus) << 16
            | u32::from(self.device) << 11
            | u32::from(self.function) << 8
            | u32::from(offset & 0xFC);
        // SAFETY: the two configuration ports belong to the host bridge and
        // the kernel is the only user of them (single CPU, and nothing else
        // touches PCI configuration space); a configuration read has no side
        // effect on the device.
        unsafe {
            io::outl(CONFIG_ADDRESS, address);
            io::inl(CONFIG_DATA)
        }
    }

    /// Vendor ID (low half) and device ID (high half); all ones if no
    /// function answers.
    pub fn ids(self) -> u32 {
        self.read(0x00)
    }

    /// The command register (bit 1: memory space decoding enabled).
    pub fn command(self) -> u16 {
        self.read(0x04) as u16
    }

    /// Base address register `n` (0-5), raw.
    pub fn bar(self, n: u8) -> u32 {
        self.read(0x10 + 4 * n)
    }
}

/// The first function with `vendor` and `device` IDs, scanning every bus,
/// device and function.
pub fn find(vendor: u16, device: u16) -> Option<Function> {
    let want = u32::from(device) << 16 | u32::from(vendor);
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            let first = Function {
                bus,
                device: dev,
                function: 0,
            };
            if first.ids() as u16 == 0xFFFF {
                continue;
            }
            // Header type bit 7: a multi-function device.
            let functions = if first.read(0x0C) >> 16 & 0x80 != 0 {
                8
            } else {
                1
            };
            for function in 0..functions {
                let f = Function { function, ..first };
                if f.ids() == want {
                    return Some(f);
                }
            }
        }
    }
    None
}
