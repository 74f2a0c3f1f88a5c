//! Builds the eBPF programs (`receiver-ebpf`) for `bpfel-unknown-none` with
//! the nightly toolchain and bpf-linker (aya-build), into `OUT_DIR`, where
//! `src/ebpf/loader.rs` embeds them.
//!
//! bpf-linker is looked up on `PATH`, then in `$OOMSCOPE_TOOLS_DIR/bin` and
//! `$HOME/.cache/oomscope/bin`, where `scripts/setup.sh` installs it.
//! `AYA_BUILD_SKIP=1` skips the eBPF build (aya-build's switch) and embeds an
//! empty object instead, so that the library builds where the eBPF toolchain
//! cannot run (the fuzz targets: their sanitizer flags must not reach it); the
//! loader then fails with a clear error.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

const EBPF_PACKAGE: &str = "receiver-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=OOMSCOPE_TOOLS_DIR");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        std::fs::write(out_dir.join(EBPF_PACKAGE), b"")
            .context("writing the empty eBPF object placeholder")?;
        println!("cargo:warning=AYA_BUILD_SKIP is set: no eBPF object is embedded; this build's oom receiver can only read the kernel log");
        return Ok(());
    }
    add_bpf_linker_to_path()?;

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf_package = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not found in the workspace"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE}'s manifest path has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Package::default()
        }],
        Toolchain::default(),
    )
}

/// Puts the first directory holding `bpf-linker` on `PATH` for the nested
/// cargo build, when it is not there already.
fn add_bpf_linker_to_path() -> anyhow::Result<()> {
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()) {
        return Ok(());
    }
    let candidates = [
        env::var_os("OOMSCOPE_TOOLS_DIR").map(|dir| PathBuf::from(dir).join("bin")),
        env::var_os("HOME").map(|home| Path::new(&home).join(".cache/oomscope/bin")),
    ];
    let Some(dir) = candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("bpf-linker").is_file())
    else {
        println!(
            "cargo:warning=bpf-linker not found on PATH, in $OOMSCOPE_TOOLS_DIR/bin or \
             ~/.cache/oomscope/bin; run scripts/setup.sh"
        );
        return Ok(());
    };
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("bpf-linker").display()
    );
    let mut dirs: Vec<PathBuf> = vec![dir];
    dirs.extend(env::split_paths(&path));
    let joined: OsString = env::join_paths(dirs).context("joining PATH")?;
    // The build script is single-threaded; the nested cargo inherits this.
    env::set_var("PATH", joined);
    Ok(())
}
