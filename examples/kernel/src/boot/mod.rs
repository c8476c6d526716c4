//! Boot: the assembly entry and boot tables, and what the loader hands over: the multiboot information, the memory map and the boot context, read through the boot window (`phys_window`).

pub mod context;
pub mod entry;
pub mod memmap;
pub mod multiboot;
pub mod phys_window;
