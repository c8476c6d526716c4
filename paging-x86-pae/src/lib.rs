//! PAE i386 paging backend for paging-core: PDPT + 512-entry PMD/PTE, 2 MiB pages, NX, 36+ bit physical addresses, tear-free 64-bit entry writes
#![no_std]
