//! The local APIC: this CPU's ID, end of interrupt, and inter-processor
//! interrupts (fixed vectors for TLB shootdowns and wake-ups, NMIs, and the
//! INIT / STARTUP sequence that starts an application processor).
//!
//! Its registers are MMIO at the physical base in IA32_APIC_BASE
//! (0xFEE0_0000 on every PC), mapped uncached into the fixmap slot
//! `LOCAL_APIC`. An NMI to self goes through the interrupt command
//! register: delivery mode NMI, physical destination = this APIC's own ID.
//! Not the "self" destination shorthand: the SDM lists self + NMI as an
//! invalid combination on xAPICs (Linux's `apic_send_IPI_self` avoids it
//! the same way), although QEMU would accept it.

use core::ptr::NonNull;

use paging_core::cpu;
use paging_core::{PhysAddr, PhysFrame};
use volatile::VolatilePtr;

use crate::base::error::Error;
use crate::failure;

/// IA32_APIC_BASE: the APIC's physical base and enable bits.
const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE bit 11: the APIC is globally enabled.
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bit 10: x2APIC mode (registers are MSRs, not MMIO).
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Local APIC ID register (bits 24..32).
const REG_ID: usize = 0x20;
/// Spurious-interrupt vector register.
const REG_SVR: usize = 0xF0;
/// Interrupt command register, low half (writing it sends the IPI).
const REG_ICR_LOW: usize = 0x300;
/// Interrupt command register, high half (destination in bits 24..32).
const REG_ICR_HIGH: usize = 0x310;
/// LVT timer register.
const REG_LVT_TIMER: usize = 0x320;
/// Timer initial count.
const REG_TIMER_INITIAL: usize = 0x380;
/// Timer current count.
const REG_TIMER_CURRENT: usize = 0x390;
/// Timer divide configuration.
const REG_TIMER_DIVIDE: usize = 0x3E0;
/// Divide by 16.
const TIMER_DIVIDE_16: u32 = 0b0011;
/// LVT: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer: periodic.
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// End-of-interrupt register (write 0).
const REG_EOI: usize = 0xB0;
/// Error status register.
const REG_ESR: usize = 0x280;
/// ICR delivery mode fixed (vector in bits 0..8).
const ICR_DELIVERY_FIXED: u32 = 0;
/// ICR delivery mode INIT.
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
/// ICR delivery mode STARTUP (vector = physical page of the entry).
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
/// ICR trigger mode level (only for INIT de-assert).
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;

/// SVR bit 8: the APIC is software-enabled.
pub const SVR_ENABLE: u32 = 1 << 8;
/// Spurious vector used while enabled (its IDT gate just returns).
pub const SPURIOUS_VECTOR: u32 = 0xFF;
/// ICR delivery mode NMI (0b100 << 8).
const ICR_DELIVERY_NMI: u32 = 0b100 << 8;
/// ICR level: assert (required for every mode but INIT de-assert).
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// ICR delivery status: the IPI has not been accepted yet.
const ICR_SEND_PENDING: u32 = 1 << 12;

/// The local APIC registers, mapped (each CPU sees its own APIC there).
#[derive(Debug)]
pub struct LocalApic {
    base: usize,
}

static APIC: spin::Once<LocalApic> = spin::Once::new();

/// The local APIC, if [`local_apic_mapped_by`] mapped it.
pub fn get() -> Option<&'static LocalApic> {
    APIC.get()
}

/// The local APIC, mapped on first use by `map` (which maps the register
/// page's frame uncached and returns its virtual address: the fixmap slot
/// `LOCAL_APIC`, by [`crate::mm::early_fixmap::local_apic`]); the same
/// mapping afterwards.
pub fn local_apic_mapped_by(
    map: impl FnOnce(PhysFrame) -> Result<usize, Error>,
) -> Result<&'static LocalApic, Error> {
    if let Some(apic) = APIC.get() {
        return Ok(apic);
    }
    if !crate::arch::cpu::features().apic {
        return Err(failure!("the CPU has no local APIC"));
    }
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked
    // above); reading it has no side effect.
    let msr = unsafe { cpu::rdmsr(IA32_APIC_BASE) };
    if msr & APIC_BASE_ENABLE == 0 || msr & APIC_BASE_X2APIC != 0 {
        return Err(failure!(
            "the local APIC is disabled or in x2APIC mode (IA32_APIC_BASE {msr:#x})"
        ));
    }
    let frame = PhysFrame::containing_address(PhysAddr::new_truncate(msr & 0xF_FFFF_F000));
    let base = map(frame)?;
    Ok(APIC.call_once(|| LocalApic { base }))
}

impl LocalApic {
    fn register(&self, offset: usize) -> VolatilePtr<'static, u32> {
        // SAFETY: `base` is the fixmap slot mapped (uncached, writable) to
        // the APIC's 4 KiB register page for the kernel's life; `offset` is
        // one of the 16-byte aligned registers above; no Rust object refers
        // to device memory.
        unsafe { VolatilePtr::new(NonNull::new_unchecked((self.base + offset) as *mut u32)) }
    }

    /// This APIC's ID.
    pub fn id(&self) -> u32 {
        self.register(REG_ID).read() >> 24
    }

    /// The spurious-interrupt vector register.
    pub fn svr(&self) -> u32 {
        self.register(REG_SVR).read()
    }

    /// Software-enables the APIC (SVR bit 8) and returns the SVR it had.
    pub fn enable(&self) -> u32 {
        let old = self.svr();
        self.register(REG_SVR)
            .write(old | SVR_ENABLE | SPURIOUS_VECTOR);
        old
    }

    /// Puts back an SVR value [`enable`](Self::enable) returned.
    pub fn restore_svr(&self, svr: u32) {
        self.register(REG_SVR).write(svr);
    }

    /// Sends an NMI to this CPU and waits until the APIC has accepted it
    /// (the NMI itself may arrive a few instructions later).
    pub fn send_nmi_to_self(&self) -> Result<(), Error> {
        self.send_nmi(self.id())
    }

    /// Sends an NMI to the CPU whose APIC ID is `apic_id`.
    pub fn send_nmi(&self, apic_id: u32) -> Result<(), Error> {
        self.send(apic_id, ICR_DELIVERY_NMI | ICR_LEVEL_ASSERT)
            .map_err(|()| failure!("the APIC never accepted the NMI"))
    }

    /// Sends the fixed interrupt `vector` to the CPU whose APIC ID is
    /// `apic_id`.
    pub fn send_fixed(&self, apic_id: u32, vector: u8) -> Result<(), ()> {
        self.send(
            apic_id,
            ICR_DELIVERY_FIXED | ICR_LEVEL_ASSERT | u32::from(vector),
        )
    }

    /// INIT (assert, then de-assert) to `apic_id`: the AP resets and waits
    /// for a STARTUP IPI.
    pub fn send_init(&self, apic_id: u32) -> Result<(), ()> {
        self.register(REG_ESR).write(0);
        self.send(
            apic_id,
            ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL,
        )?;
        self.send(apic_id, ICR_DELIVERY_INIT | ICR_TRIGGER_LEVEL)
    }

    /// STARTUP to `apic_id`: the AP starts in real mode at physical
    /// `page * 4096` (CS = page << 8, IP = 0).
    pub fn send_startup(&self, apic_id: u32, page: u8) -> Result<(), ()> {
        self.register(REG_ESR).write(0);
        self.send(apic_id, ICR_DELIVERY_STARTUP | u32::from(page))
    }

    /// Runs the APIC timer periodically: `vector` every `count` ticks of
    /// the bus clock divided by 16.
    pub fn timer_periodic(&self, vector: u8, count: u32) {
        self.register(REG_TIMER_DIVIDE).write(TIMER_DIVIDE_16);
        self.register(REG_LVT_TIMER)
            .write(LVT_TIMER_PERIODIC | u32::from(vector));
        self.register(REG_TIMER_INITIAL).write(count);
    }

    /// Counts down once from `u32::MAX` (masked: no interrupt), for
    /// calibration; read it with [`timer_current`](Self::timer_current).
    pub fn timer_one_shot_masked(&self) {
        self.register(REG_TIMER_DIVIDE).write(TIMER_DIVIDE_16);
        self.register(REG_LVT_TIMER).write(LVT_MASKED);
        self.register(REG_TIMER_INITIAL).write(u32::MAX);
    }

    /// The timer's current count.
    pub fn timer_current(&self) -> u32 {
        self.register(REG_TIMER_CURRENT).read()
    }

    /// Stops the timer.
    pub fn timer_stop(&self) {
        self.register(REG_LVT_TIMER).write(LVT_MASKED);
        self.register(REG_TIMER_INITIAL).write(0);
    }

    /// Signals the end of the interrupt being serviced.
    pub fn eoi(&self) {
        self.register(REG_EOI).write(0);
    }

    /// Writes the ICR (destination first: writing the low half sends) and
    /// waits until the APIC has accepted the IPI. Callers on several CPUs
    /// use their own APIC: the registers are per CPU at the same address.
    /// The caller keeps interrupts off between the two writes, or an
    /// interrupt handler sending its own IPI could change the destination.
    fn send(&self, apic_id: u32, low: u32) -> Result<(), ()> {
        let flags = crate::arch::cpu::save_and_disable_interrupts();
        self.register(REG_ICR_HIGH).write(apic_id << 24);
        self.register(REG_ICR_LOW).write(low);
        let mut accepted = false;
        for _ in 0..1_000_000 {
            if self.register(REG_ICR_LOW).read() & ICR_SEND_PENDING == 0 {
                accepted = true;
                break;
            }
            core::hint::spin_loop();
        }
        crate::arch::cpu::restore_interrupts(flags);
        if accepted { Ok(()) } else { Err(()) }
    }
}
