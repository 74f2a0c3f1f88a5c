//! The ABI shared by oomscope's eBPF programs and its user-space loader.
//!
//! Every type here is `#[repr(C)]`, `Copy`, has explicit padding and a
//! compile-time size check, so the kernel and user sides agree byte for byte.
//! One module per event.
#![no_std]

pub mod exec;
pub mod oom;
pub mod oom_scope;
