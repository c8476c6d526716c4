//! The 32-bit task-state segments: the main task's (needed so a hardware task
//! switch has somewhere to save the interrupted state) and the double-fault
//! task's, whose own stack lets the handler run even when the kernel stack
//! is exhausted.

/// A 32-bit task-state segment (Intel SDM vol. 3, "32-bit TSS"). Segment
/// selector fields occupy the low 16 bits of their word.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct TaskStateSegment {
    /// Selector of the previous task (set by the CPU on a nested switch).
    pub link: u32,
    /// Ring-0 stack pointer (used on privilege changes; unused here).
    pub esp0: u32,
    /// Ring-0 stack segment.
    pub ss0: u32,
    /// Ring-1 stack pointer.
    pub esp1: u32,
    /// Ring-1 stack segment.
    pub ss1: u32,
    /// Ring-2 stack pointer.
    pub esp2: u32,
    /// Ring-2 stack segment.
    pub ss2: u32,
    /// Page-directory base loaded on a switch to this task.
    pub cr3: u32,
    /// Instruction pointer.
    pub eip: u32,
    /// Flags.
    pub eflags: u32,
    /// General registers, in hardware order.
    pub eax: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
    /// EBX.
    pub ebx: u32,
    /// ESP.
    pub esp: u32,
    /// EBP.
    pub ebp: u32,
    /// ESI.
    pub esi: u32,
    /// EDI.
    pub edi: u32,
    /// ES selector.
    pub es: u32,
    /// CS selector.
    pub cs: u32,
    /// SS selector.
    pub ss: u32,
    /// DS selector.
    pub ds: u32,
    /// FS selector.
    pub fs: u32,
    /// GS selector.
    pub gs: u32,
    /// LDT selector.
    pub ldt: u32,
    /// Bit 0: debug trap on switch; bits 16..32: I/O bitmap offset.
    pub trap_iomap: u32,
}

const _: () = assert!(size_of::<TaskStateSegment>() == 104);

impl TaskStateSegment {
    /// A TSS with no I/O permission bitmap (its offset points past the limit).
    pub const fn empty() -> Self {
        Self {
            link: 0,
            esp0: 0,
            ss0: 0,
            esp1: 0,
            ss1: 0,
            esp2: 0,
            ss2: 0,
            cr3: 0,
            eip: 0,
            eflags: 0,
            eax: 0,
            ecx: 0,
            edx: 0,
            ebx: 0,
            esp: 0,
            ebp: 0,
            esi: 0,
            edi: 0,
            es: 0,
            cs: 0,
            ss: 0,
            ds: 0,
            fs: 0,
            gs: 0,
            ldt: 0,
            trap_iomap: (size_of::<Self>() as u32) << 16,
        }
    }
}
