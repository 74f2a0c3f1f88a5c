//! Real containers with podman (Debian's 4.3, as root): images built from
//! local files only (no registry is reachable), containers removed on drop.
//!
//! This machine kind needs `runc` (crun refuses hybrid cgroups) and explicit
//! ulimits (root lacks CAP_SYS_RESOURCE, so podman's defaults cannot be
//! applied): [`run_args`] adds both.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// Why podman cannot be used here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (podman runs rootful containers here)".into());
    }
    match Command::new("podman").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "podman --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Some(format!(
            "podman not found ({e}); scripts/setup.sh installs it (apt-get install podman runc busybox-static)"
        )),
    }
}

/// Runs podman with `args`; panics with its output when it fails.
pub fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs podman with `args` (using runc) and returns its output, whatever it is.
pub fn podman_output(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("run podman")
}

/// The `podman run` options every container here needs.
pub fn run_args() -> Vec<&'static str> {
    vec![
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
    ]
}

/// A container that is removed (with its storage) when dropped.
#[derive(Debug)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// Names a container to be removed on drop; removes a leftover of the
    /// same name first (a crashed earlier run).
    pub fn named(name: &str) -> Self {
        let _ = podman_output(&["rm", "-f", "-t", "0", name]);
        Container { name: name.into() }
    }

    /// The full id.
    pub fn id(&self) -> String {
        podman(&["inspect", "--format", "{{.Id}}", &self.name])
    }

    /// stdout and stderr of the container so far.
    pub fn logs(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// Builds `tag` from `containerfile` with `context`, plus `--build-arg`s.
pub fn build(tag: &str, containerfile: &Path, context: &Path, build_args: &[&str]) {
    let mut args = vec!["build", "-q", "-t", tag, "-f"];
    let file = containerfile.to_string_lossy().into_owned();
    let ctx = context.to_string_lossy().into_owned();
    args.push(&file);
    for a in build_args {
        args.extend(["--build-arg", a]);
    }
    args.push(&ctx);
    podman(&args);
}

/// `localhost/oomscope-test-busybox:1.0`: Debian's static busybox on
/// `scratch`. `busybox tail /dev/zero` allocates until its limit kills it
/// (it looks for a newline that never comes).
pub fn busybox_image() -> &'static str {
    static IMAGE: OnceLock<()> = OnceLock::new();
    const TAG: &str = "localhost/oomscope-test-busybox:1.0";
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root/bin");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::copy("/bin/busybox", root.join("busybox"))
            .expect("copy /bin/busybox (Debian's busybox-static)");
        for applet in ["sh", "sleep", "tail", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join(applet)).expect("symlink");
        }
        let file = dir.path().join("Containerfile");
        std::fs::write(
            &file,
            "FROM scratch\nCOPY root/ /\nCMD [\"/bin/sleep\", \"3600\"]\n",
        )
        .expect("write Containerfile");
        build(TAG, &file, dir.path(), &[]);
    });
    TAG
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the receiver crate is in the workspace")
        .to_path_buf()
}

/// `localhost/oomscope:test`: the repository's Containerfile, its runtime
/// stage fed with this test build's binary (the `prebuilt` way: no
/// registry, no toolchain in a container).
pub fn agent_image() -> &'static str {
    static IMAGE: OnceLock<()> = OnceLock::new();
    const TAG: &str = "localhost/oomscope:test";
    IMAGE.get_or_init(|| {
        let repo = repo_root();
        let ctx = tempfile::tempdir().expect("tempdir");
        let rootfs = ctx.path().join("rootfs");
        let status = Command::new(repo.join("scripts/image-rootfs.sh"))
            .arg(env!("CARGO_BIN_EXE_oomscope"))
            .arg(&rootfs)
            .status()
            .expect("run scripts/image-rootfs.sh");
        assert!(status.success(), "scripts/image-rootfs.sh failed: {status}");
        build(
            TAG,
            &repo.join("Containerfile"),
            ctx.path(),
            &["BINARY_STAGE=prebuilt"],
        );
    });
    TAG
}
