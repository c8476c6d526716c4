//! [`ThisCpu`]: a token for "the CPU running this code", so the per-CPU rule
//! of [`LocalSlots::map`](crate::LocalSlots::map) is checked by types where a
//! kernel can afford it.

use core::fmt;
use core::marker::PhantomData;

/// The index of the CPU that runs the code holding this token.
///
/// [`LocalSlots::map_on`](crate::LocalSlots::map_on) takes it instead of a
/// bare index. The token is created once per CPU-bound context by the one
/// piece of kernel code that knows which CPU it runs on (the per-CPU area,
/// an APIC ID lookup, `smp_processor_id`), under an `unsafe` contract, and
/// is neither `Send` nor `Sync`: it cannot be handed to, or shared with,
/// another thread of execution, so code that received it cannot pass
/// another CPU's index by mistake.
///
/// It is `Copy` so that nested calls can pass it down; a copy is bound by
/// the same contract and the same thread.
///
/// ```
/// use kmap::ThisCpu;
///
/// fn cpu_index_from_the_per_cpu_area() -> usize {
///     0
/// }
///
/// // SAFETY: (the kernel's own reasons) preemption is off for the rest of
/// // this handler, and the per-CPU area says this is CPU 0.
/// let cpu = unsafe { ThisCpu::new(cpu_index_from_the_per_cpu_area()) };
/// assert_eq!(cpu.index(), 0);
/// ```
///
/// It cannot go to another thread:
///
/// ```compile_fail
/// use kmap::ThisCpu;
/// fn needs_send<T: Send>(_: T) {}
/// // SAFETY: a doctest on one thread.
/// let cpu = unsafe { ThisCpu::new(0) };
/// // error[E0277]: `*const ()` cannot be sent between threads safely
/// needs_send(cpu);
/// ```
///
/// nor be shared with one:
///
/// ```compile_fail
/// use kmap::ThisCpu;
/// fn needs_sync<T: Sync>(_: &T) {}
/// // SAFETY: a doctest on one thread.
/// let cpu = unsafe { ThisCpu::new(0) };
/// // error[E0277]: `*const ()` cannot be shared between threads safely
/// needs_sync(&cpu);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ThisCpu {
    index: usize,
    /// Neither `Send` nor `Sync`: the token belongs to its CPU.
    _on_this_cpu: PhantomData<*const ()>,
}

impl ThisCpu {
    /// The token for CPU `index`.
    ///
    /// # Safety
    /// - `index` is the index of the CPU running this call, in the
    ///   numbering the kernel's [`LocalSlots`](crate::LocalSlots) use;
    /// - the code holding the token (or a copy) stays on that CPU until the
    ///   last copy is gone: migration (or preemption) is disabled, or the
    ///   token lives only inside an interrupt handler or another context
    ///   that cannot move. A context switch that moves a task must not
    ///   carry the token along (kernels keep it on the stack of CPU-bound
    ///   code, never in a task's saved state).
    ///
    /// Breaking this makes two CPUs share one local-kmap stack, or leaves a
    /// slot invalidated in the wrong CPU's TLB: another CPU may then read
    /// the wrong page through a stale translation.
    #[allow(unsafe_code)]
    pub const unsafe fn new(index: usize) -> Self {
        Self {
            index,
            _on_this_cpu: PhantomData,
        }
    }

    /// The CPU's index.
    pub const fn index(self) -> usize {
        self.index
    }
}

impl fmt::Debug for ThisCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThisCpu").field(&self.index).finish()
    }
}
