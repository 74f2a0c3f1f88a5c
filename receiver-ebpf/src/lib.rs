// Empty library target: lets `cargo` treat this crate as a normal package
// (the programs are in the binary, built for bpfel-unknown-none).
#![no_std]
