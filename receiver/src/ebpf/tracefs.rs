//! tracefs as doctor (and whoever mounts it) needs to explain it: mounting
//! it at /sys/kernel/tracing, why a mount fails, and the fix.
//!
//! The probe only reads tracefs (`events/<category>/<name>/id` for the
//! tracepoint id aya passes to `perf_event_open`, and `format` for the
//! record layout), so a read-only tracefs (`ro`, e.g. a container's
//! read-only hostPath of /sys/kernel/tracing) serves it fully.

use std::ffi::CStr;
use std::io;

/// Where the agent mounts tracefs when none is mounted.
pub const MOUNT_POINT: &str = "/sys/kernel/tracing";

/// What to do when tracefs is not mounted and cannot be mounted here.
pub const MOUNT_FIX: &str = "mount it on the host (`mount -t tracefs nodev /sys/kernel/tracing`) \
     and give it to the agent: in Kubernetes a hostPath volume of /sys/kernel/tracing mounted at \
     /sys/kernel/tracing (readOnly is enough; deploy/kubernetes/base/daemonset.yaml does this), \
     with podman `-v /sys/kernel/tracing:/sys/kernel/tracing:ro`; or give the agent CAP_SYS_ADMIN \
     so that it mounts tracefs itself";

/// Mounts tracefs at [`MOUNT_POINT`] (as the eBPF loader does when none is
/// mounted).
pub fn mount() -> io::Result<()> {
    const SOURCE: &CStr = c"nodev";
    const TARGET: &CStr = c"/sys/kernel/tracing";
    const FSTYPE: &CStr = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            SOURCE.as_ptr(),
            TARGET.as_ptr(),
            FSTYPE.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The errno's name and what it means for a tracefs mount.
#[must_use]
pub fn mount_failure_cause(errno: Option<i32>) -> String {
    let (name, cause) = match errno {
        Some(libc::EPERM) => (
            "EPERM",
            "this process lacks CAP_SYS_ADMIN (in its mount namespace's user namespace), \
             or a seccomp filter refuses mount",
        ),
        Some(libc::EACCES) => (
            "EACCES",
            "a security policy (AppArmor, SELinux) refuses the mount",
        ),
        Some(libc::EROFS) => ("EROFS", "the file system is read-only here"),
        Some(libc::ENODEV) => ("ENODEV", "the kernel has no tracefs"),
        Some(libc::ENOENT) => (
            "ENOENT",
            "/sys/kernel/tracing does not exist (sysfs not mounted, or a kernel without tracing)",
        ),
        Some(n) => return format!("errno {n}"),
        None => return "no errno".to_owned(),
    };
    format!("{name}: {cause}")
}

/// The one warning for a failed tracefs mount: the error, its cause and the
/// fix. The agent goes on without eBPF (kmsg) after it.
#[must_use]
pub fn mount_failure_warning(err: &io::Error) -> String {
    format!(
        "tracefs is not mounted and mounting it at {MOUNT_POINT} failed: {err} ({}); \
         eBPF cannot find the tracepoint; to fix: {MOUNT_FIX}",
        mount_failure_cause(err.raw_os_error())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_mount_names_its_cause_and_the_fix() {
        let warning = mount_failure_warning(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            warning.contains("EPERM: this process lacks CAP_SYS_ADMIN"),
            "{warning}"
        );
        assert!(
            warning.contains("mount -t tracefs nodev /sys/kernel/tracing")
                && warning.contains("hostPath volume of /sys/kernel/tracing")
                && warning.contains("-v /sys/kernel/tracing:/sys/kernel/tracing:ro"),
            "{warning}"
        );
        for (errno, name) in [
            (libc::EACCES, "EACCES"),
            (libc::EROFS, "EROFS"),
            (libc::ENODEV, "ENODEV"),
            (libc::ENOENT, "ENOENT"),
        ] {
            assert!(mount_failure_cause(Some(errno)).starts_with(name));
        }
        assert_eq!(mount_failure_cause(Some(libc::EBUSY)), "errno 16");
        assert_eq!(mount_failure_cause(None), "no errno");
    }
}
