//! Host-only software model of RAM, MMU and TLB (feature `sim`).
