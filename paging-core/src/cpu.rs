//! The real x86 instructions (32-bit targets only).
