//! How a shootdown reaches other CPUs, and which CPUs it names.

use crate::CpuSet;

/// What a shootdown needs from the kernel: which CPU runs, and how to send
/// the shootdown interrupt.
///
/// # The interrupt-masking rule
///
/// [`Shootdown::flush`](crate::Shootdown::flush) and every other method
/// that takes the local TLB (`service`, `set_online`, `set_offline`,
/// `flush_everything_local`) run with **this CPU's shootdown interrupt
/// masked** (the kernel wraps them in `cli` ... restore-flags, or runs them
/// from the interrupt handler, where it is masked already). They lock this
/// CPU's mailbox for a few instructions; the handler taking the same lock
/// on the same CPU would deadlock. Masking is also why waiting cannot
/// deadlock: a CPU that waits for acknowledgements keeps servicing its own
/// mailbox, so another CPU waiting for it is answered without an interrupt.
///
/// The shootdown interrupt's handler calls
/// [`Shootdown::service`](crate::Shootdown::service) with the local TLB,
/// then signals end-of-interrupt.
pub trait IpiPlatform: Sync {
    /// The index of the CPU running the caller (the LAPIC ID mapped to a
    /// dense index, a per-CPU variable). The caller does not migrate while
    /// a method of the shootdown runs (interrupts are masked).
    fn current_cpu(&self) -> usize;

    /// Deliver the shootdown interrupt to every CPU in `targets` (never the
    /// current one): on x86, one write of the LAPIC ICR per CPU, or one
    /// broadcast. It need not wait for delivery. An interrupt that arrives
    /// while its CPU has nothing to do is harmless.
    fn send(&self, targets: CpuSet);

    /// Called once per round of every wait for acknowledgements, after the
    /// waiting CPU serviced its own mailbox: a pause (the default,
    /// [`core::hint::spin_loop`]), or a test's way to let the other
    /// simulated CPUs run.
    fn relax(&self) {
        core::hint::spin_loop();
    }

    /// Called after the current CPU acknowledged requests (stored its
    /// `done` counter): a waiting initiator may now proceed. The default
    /// does nothing. A platform whose [`relax`](Self::relax) sleeps until
    /// something happens (a hypervisor yield, MONITOR/MWAIT on the
    /// counters, the model checker's condition variable) wakes its waiters
    /// here and in [`send`](Self::send).
    fn acked(&self) {}
}

impl<T: IpiPlatform + ?Sized> IpiPlatform for &T {
    fn current_cpu(&self) -> usize {
        (**self).current_cpu()
    }
    fn send(&self, targets: CpuSet) {
        (**self).send(targets)
    }
    fn relax(&self) {
        (**self).relax()
    }
    fn acked(&self) {
        (**self).acked()
    }
}

/// Which CPUs' TLBs a flush must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Every online CPU and the current one: kernel mappings (the kmap
    /// pool's wrap, a vmalloc unmap, a fixmap slot shared by all CPUs).
    AllCpus,
    /// These CPUs (for a user address space: the CPUs that have run it
    /// since its TLB entries could have been loaded). The current CPU is
    /// flushed locally if it is in the set; every other one must be
    /// online, or the flush fails with
    /// [`ShootdownError::Offline`](crate::ShootdownError::Offline).
    Cpus(CpuSet),
    /// Only the current CPU, no interrupt: a per-CPU mapping (a local kmap
    /// slot) that no other CPU uses.
    Local,
}
