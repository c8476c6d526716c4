//! CPU exception entry stubs and their Rust dispatcher.
//!
//! Each stub pushes a dummy error code (for vectors where the CPU pushes
//! none) and its vector number, then the common path saves the general
//! registers (`pushad`) and calls [`exception_dispatch`] with a pointer to
//! the resulting [`ExceptionFrame`]. If the dispatcher returns, the stub
//! restores the (possibly edited) frame and `iretd`s.
//!
//! The dispatcher names no handler of a higher layer: the kernel registers
//! them at boot ([`register`], from `kmain`), so this file imports only the
//! CPU's own code. A page fault goes first to the kernel's lazy sync path
//! ([`Handlers::kernel_page_fault`]): a kernel address the running
//! directory lacks only because it was mapped later in the reference gets
//! its entry copied, and the instruction is retried. Then a process's fault
//! ([`Handlers::user_page_fault`]: demand-zero, copy-on-write or its end).
//! Otherwise a fault armed by [`crate::arch::fault_probe`] resumes at the
//! probe's recovery address. An NMI (vector 2) goes to [`crate::arch::nmi`]
//! and returns. Every other exception a process did not cause
//! ([`Handlers::user_exception`]) is reported and ends the run.

use crate::{arch::cpu, arch::fault_probe, arch::io, arch::nmi, println};

/// The handlers the layers above register at boot: the dispatcher calls
/// them by vector and by kind, without naming them.
#[derive(Clone, Copy)]
pub struct Handlers {
    /// The system-call vector and its handler.
    pub syscall: (u32, fn(&mut ExceptionFrame)),
    /// The timer's vector and its handler.
    pub timer: (u32, fn(&ExceptionFrame)),
    /// Every other interrupt vector (32 and up): the IPIs.
    pub interrupt: fn(u32),
    /// A page fault the kernel's own mappings resolve (lazy kernel sync);
    /// `true`: retry the access. Arguments: CR2 and the error code.
    pub kernel_page_fault: fn(u32, u32) -> bool,
    /// A page fault of a running process; `true`: retry the access.
    pub user_page_fault: fn(&ExceptionFrame, u32, u32) -> bool,
    /// Any other exception; `true`: a process caused it and was dealt with.
    pub user_exception: fn(&ExceptionFrame) -> bool,
}

/// Set once by [`register`] before interrupts are enabled.
static HANDLERS: spin::Once<Handlers> = spin::Once::new();

/// Registers the higher layers' handlers (once, at boot, before any
/// interrupt or process; later calls change nothing).
pub fn register(handlers: Handlers) {
    HANDLERS.call_once(|| handlers);
}

/// Vector of the non-maskable interrupt.
const NMI: u32 = 2;
/// Vector of the page-fault exception.
const PAGE_FAULT: u32 = 14;

/// State saved on the stack by a stub, lowest address first.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ExceptionFrame {
    /// GS of the interrupted code.
    pub gs: u32,
    /// FS.
    pub fs: u32,
    /// ES.
    pub es: u32,
    /// DS.
    pub ds: u32,
    /// EDI (from `pushad`).
    pub edi: u32,
    /// ESI.
    pub esi: u32,
    /// EBP.
    pub ebp: u32,
    /// ESP at the `pushad` (ignored by `popad`); see [`Self::interrupted_esp`].
    pub esp: u32,
    /// EBX.
    pub ebx: u32,
    /// EDX.
    pub edx: u32,
    /// ECX.
    pub ecx: u32,
    /// EAX.
    pub eax: u32,
    /// Exception vector.
    pub vector: u32,
    /// Error code pushed by the CPU, or 0.
    pub error_code: u32,
    /// Faulting (or next) instruction; `iretd` resumes here.
    pub eip: u32,
    /// Code segment.
    pub cs: u32,
    /// Flags.
    pub eflags: u32,
}

impl ExceptionFrame {
    /// Stack pointer of the interrupted code (same privilege level: the CPU
    /// pushed EFLAGS, CS and EIP, the stub the error code and vector).
    pub fn interrupted_esp(&self) -> u32 {
        self.esp.wrapping_add(5 * 4)
    }

    /// Whether the interrupted code ran in ring 3 (then the CPU also pushed
    /// its ESP and SS: a [`UserFrame`]).
    pub fn user_mode(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// What an interrupt from ring 3 leaves on the kernel stack: the frame plus
/// the user ESP and SS the CPU pushed.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct UserFrame {
    /// As for kernel-mode interrupts.
    pub frame: ExceptionFrame,
    /// The user stack pointer.
    pub user_esp: u32,
    /// The user stack segment.
    pub user_ss: u32,
}

core::arch::global_asm!(
    r#"
    .macro EXC_NOERR n
exception_stub_\n:
    push 0
    push \n
    jmp exception_common
    .endm
    .macro EXC_ERR n
exception_stub_\n:
    push \n
    jmp exception_common
    .endm

    .section .text, "ax"
exception_common:
    pushad
    // 32-bit slots (a plain `push ds` assembles to a 16-bit push here).
    mov eax, ds
    push eax
    mov eax, es
    push eax
    mov eax, fs
    push eax
    mov eax, gs
    push eax
    cld
    // EFLAGS.AC off (ring 3 may set it with popfd; a 32-bit gate keeps
    // it): with SMAP on, no kernel code may reach user pages but the
    // usercopy path, which sets it itself. `iretd` restores the
    // interrupted code's AC. (Not `clac`: it is #UD without SMAP.)
    pushfd
    and dword ptr [esp], {not_ac}
    popfd
    // Ring 3 may have left any data segment (or a null one) in DS, ES and
    // GS: the kernel's flat data and this CPU's per-CPU segment.
    mov ax, {kernel_data}
    mov ds, ax
    mov es, ax
    mov ax, {per_cpu}
    mov gs, ax
    push esp
    call exception_dispatch
    add esp, 4
    .global exception_return
exception_return:
    pop eax
    mov gs, ax
    pop eax
    mov fs, ax
    pop eax
    mov es, ax
    pop eax
    mov ds, ax
    popad
    add esp, 8
    iretd

    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR 8
    EXC_NOERR 9
    EXC_ERR 10
    EXC_ERR 11
    EXC_ERR 12
    EXC_ERR 13
    EXC_ERR 14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR 17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR 21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR 29
    EXC_ERR 30
    EXC_NOERR 31

    .macro IRQ n
interrupt_stub_\n:
    push 0
    push \n
    jmp exception_common
    .endm
    IRQ 0x27
    IRQ 0x2F
    IRQ 0x40
    IRQ 0x80
    IRQ 0xF0
    IRQ 0xF1
    IRQ 0xF2
    IRQ 0xFF

    .section .rodata, "a"
    .p2align 2
    .global interrupt_stub_table
interrupt_stub_table:
    .long 0x27, interrupt_stub_0x27, 0x2F, interrupt_stub_0x2F
    .long 0xF0, interrupt_stub_0xF0, 0xF1, interrupt_stub_0xF1
    .long 0xF2, interrupt_stub_0xF2, 0xFF, interrupt_stub_0xFF
    .long 0x40, interrupt_stub_0x40, 0x80, interrupt_stub_0x80
    .global exception_stub_table
exception_stub_table:
    .long exception_stub_0, exception_stub_1, exception_stub_2, exception_stub_3
    .long exception_stub_4, exception_stub_5, exception_stub_6, exception_stub_7
    .long exception_stub_8, exception_stub_9, exception_stub_10, exception_stub_11
    .long exception_stub_12, exception_stub_13, exception_stub_14, exception_stub_15
    .long exception_stub_16, exception_stub_17, exception_stub_18, exception_stub_19
    .long exception_stub_20, exception_stub_21, exception_stub_22, exception_stub_23
    .long exception_stub_24, exception_stub_25, exception_stub_26, exception_stub_27
    .long exception_stub_28, exception_stub_29, exception_stub_30, exception_stub_31
    "#,
    kernel_data = const crate::arch::gdt::KERNEL_DATA,
    per_cpu = const crate::arch::gdt::PER_CPU,
    not_ac = const !(1u32 << 18),
);

unsafe extern "C" {
    /// Addresses of the 32 exception stubs (assembly above).
    static exception_stub_table: [u32; 32];
    /// `(vector, stub address)` of the interrupt vectors the kernel uses.
    static interrupt_stub_table: [[u32; 2]; 8];
}

/// `(vector, stub address)` of the interrupt vectors above the exceptions:
/// the legacy PIC's spurious IRQs 7 and 15 (the PIC is moved to 0x20 and
/// masked), the shootdown, wake-up and call IPIs, and the local APIC's
/// spurious vector.
pub fn interrupt_stubs() -> &'static [[u32; 2]; 8] {
    // SAFETY: the table is initialised read-only data emitted above.
    unsafe { &interrupt_stub_table }
}

/// Addresses of the stubs for vectors 0..32.
pub fn stubs() -> &'static [u32; 32] {
    // SAFETY: the table is initialised read-only data emitted above.
    unsafe { &exception_stub_table }
}

/// Short name of an exception vector.
fn name(vector: u32) -> &'static str {
    const NAMES: [&str; 22] = [
        "divide error",
        "debug",
        "NMI",
        "breakpoint",
        "overflow",
        "BOUND range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point error",
        "virtualization exception",
        "control protection",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("reserved")
}

/// Called by `exception_common` with the saved state.
#[unsafe(no_mangle)]
extern "C" fn exception_dispatch(frame: &mut ExceptionFrame) {
    let handlers = HANDLERS.get();
    if let Some(h) = handlers {
        if frame.vector == h.syscall.0 {
            (h.syscall.1)(frame);
            return;
        }
        if frame.vector == h.timer.0 {
            (h.timer.1)(frame);
            return;
        }
    }
    if frame.vector >= 32 {
        if let Some(h) = handlers {
            (h.interrupt)(frame.vector);
        }
        return;
    }
    if frame.vector == NMI {
        nmi::handle(frame);
        return;
    }
    if frame.vector == PAGE_FAULT {
        let address = cpu::cr2();
        if let Some(h) = handlers
            && ((h.kernel_page_fault)(address, frame.error_code)
                || (h.user_page_fault)(frame, address, frame.error_code))
        {
            return;
        }
        if let Some(resume) = fault_probe::catch(address, frame.error_code, frame.eip) {
            frame.eip = resume;
            return;
        }
        println!();
        println!(
            "PAGE FAULT at EIP {:#010x}: address (CR2) {:#010x}, error code {:#x} ({})",
            frame.eip,
            address,
            frame.error_code,
            fault_probe::ErrorCode(frame.error_code)
        );
    } else if handlers.is_some_and(|h| (h.user_exception)(frame)) {
        return;
    } else {
        println!();
        println!(
            "EXCEPTION {} ({}) at EIP {:#010x}, error code {:#x}",
            frame.vector,
            name(frame.vector),
            frame.eip,
            frame.error_code
        );
    }
    println!(
        "  EAX {:#010x}  EBX {:#010x}  ECX {:#010x}  EDX {:#010x}",
        frame.eax, frame.ebx, frame.ecx, frame.edx
    );
    println!(
        "  ESI {:#010x}  EDI {:#010x}  EBP {:#010x}  ESP {:#010x}  EFLAGS {:#010x}",
        frame.esi,
        frame.edi,
        frame.ebp,
        frame.interrupted_esp(),
        frame.eflags
    );
    io::exit_qemu(false)
}
