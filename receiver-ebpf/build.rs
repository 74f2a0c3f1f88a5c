//! bpf-linker is an undeclared dependency of this crate (rustc invokes it as
//! the linker for the bpf target): rebuild when it changes.
use which::which;

fn main() {
    // Print nothing when it is missing: the build itself then fails with a
    // clearer message from rustc.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
