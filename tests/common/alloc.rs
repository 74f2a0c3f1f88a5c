//! The static allocator that the container and kernel-matrix tests kill
//! (`alloc.c` beside this file): it allocates only under a memory limit of
//! at most 256 MiB on its own cgroup.

use std::path::Path;
use std::process::Command;

/// The allocator's C source.
pub const ALLOCATOR_C: &str = include_str!("alloc.c");

/// Compiles the allocator with `gcc -static` to `out`; panics with gcc's
/// output if that fails.
pub fn build_static(out: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("alloc.c");
    std::fs::write(&src, ALLOCATOR_C).expect("write the allocator");
    let output = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        output.status.success(),
        "gcc -static failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
