//! Classic 32-bit i386 paging backend for paging-core: 1024x1024 tables, 4 MiB PSE pages, global pages
#![no_std]
