#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod bits;
mod cr3;
mod enable;
mod mode;
mod pde;
mod pdpte;
mod pte;
mod write;

pub use bits::{PdeBits, PdpteBits, PteBits};
pub use cr3::{Cr3, Cr3Error};
pub use enable::{EnableError, Features};
#[cfg(target_arch = "x86")]
#[cfg_attr(docsrs, doc(cfg(target_arch = "x86")))]
pub use enable::{enable_pae_paging, supported_features};
pub use mode::Pae;
pub use pde::Pde;
pub use pdpte::Pdpte;
pub use pte::Pte;
