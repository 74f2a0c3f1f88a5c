//! Creating the agent's own files and directories with fixed modes, and
//! never through a symbolic link someone planted where they go.
//!
//! Modes are set with `fchmod`/`chmod` after creation, so the process umask
//! (which can only take bits away, or leave a file unreadable to its owner)
//! does not decide them. Files are opened with `O_NOFOLLOW`: a symbolic
//! link in the last component fails with `ELOOP` instead of being written
//! through. Directories the agent walks into are checked with
//! `symlink_metadata` before use.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the agent's state and output files: owner read/write only.
pub const FILE_MODE: u32 = 0o600;

/// Mode of the directories the agent creates: owner only.
pub const DIR_MODE: u32 = 0o700;

/// Whether `e` is what opening a symbolic link with `O_NOFOLLOW` gives.
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// The error for a symbolic link found where the agent keeps its own file.
pub fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; oomscope does not follow symbolic links where it \
             writes its own files (remove the link)",
            path.display()
        ),
    )
}

/// Creates `path` as a new file (`O_EXCL | O_NOFOLLOW`) with exactly `mode`.
/// An entry already there (a leftover, or a planted link) is unlinked, never
/// followed, and the create is tried once more.
pub fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // unlink removes a symbolic link itself, not what it points to.
            fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// Reads the whole file at `path` without following a symbolic link in its
/// last component (that gives an error for which [`is_symlink_error`] holds).
pub fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens (creating with exactly `mode` when missing) a file to append to,
/// without following a symbolic link in its last component. An existing
/// file keeps its mode: the operator may have changed it on purpose.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(mode))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if is_symlink_error(&e) {
                    symlink_refused(path)
                } else {
                    e
                }
            }),
        Err(e) => Err(e),
    }
}

/// Creates `path` and its missing parents, each new directory with exactly
/// `mode`; directories that exist keep theirs.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(mode)),
        // Created meanwhile by someone else: theirs, keep its mode.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes sure `path`, an entry inside a directory the agent owns, is a real
/// directory (created with exactly `mode` when missing): a symbolic link
/// there is refused, not followed.
pub fn ensure_own_dir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(path)),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => fs::set_permissions(path, Permissions::from_mode(mode)),
                // Made meanwhile: accepted only as a real directory.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match fs::symlink_metadata(path) {
                        Ok(m) if m.is_dir() => Ok(()),
                        _ => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Parses a mode written as octal digits (`"0700"`, `"750"`), as the
/// collector's `directory_permissions`.
pub fn parse_octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{text:?} is not an octal mode such as \"0700\" (digits 0-7 only)"
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "{text:?} is not a file mode (at most 4 octal digits, up to 7777)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    /// Runs `f` under the umask `mask`. The umask is process-wide and tests
    /// run in threads, so only masks that leave the owner's bits alone are
    /// used (others' files merely come out more private meanwhile).
    fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
        static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: umask only swaps the process's file creation mask.
        let old = unsafe { libc::umask(mask) };
        let result = f();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        result
    }

    /// 0750/0640 under a 077 umask would come out 0700/0600 from the
    /// create alone: the explicit chmod makes them exact.
    #[test]
    fn modes_do_not_depend_on_the_umask() {
        for mask in [0o002, 0o077] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dirs = tmp.path().join("a/b");
            let own = tmp.path().join("a/b/own");
            let file = tmp.path().join("a/b/f");
            let appended = tmp.path().join("a/b/g");
            with_umask(mask, || {
                create_dir_all(&dirs, 0o750).expect("mkdir");
                ensure_own_dir(&own, 0o750).expect("mkdir");
                create_new_file(&file, 0o640).expect("create");
                open_append(&appended, 0o640).expect("create");
            });
            for dir in [&tmp.path().join("a"), &dirs, &own] {
                assert_eq!(mode_of(dir), 0o750, "umask {mask:o}: {}", dir.display());
            }
            assert_eq!(mode_of(&file), 0o640, "umask {mask:o}");
            assert_eq!(mode_of(&appended), 0o640, "umask {mask:o}");
        }
    }

    #[test]
    fn a_planted_link_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"precious").expect("write");
        let link = tmp.path().join("state.tmp");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let mut f = create_new_file(&link, 0o600).expect("create");
        f.write_all(b"ours").expect("write");
        drop(f);
        assert_eq!(fs::read(&outside).expect("read"), b"precious");
        assert!(!fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&link).expect("read"), b"ours");
    }

    #[test]
    fn links_are_not_read_appended_to_or_walked_into() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::write(outside.join("f"), b"precious").expect("write");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(outside.join("f"), &link).expect("symlink");
        let err = read_no_follow(&link).expect_err("a link");
        assert!(is_symlink_error(&err), "{err}");
        let err = open_append(&link, 0o600).expect_err("a link");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let dir_link = tmp.path().join("dir");
        std::os::unix::fs::symlink(&outside, &dir_link).expect("symlink");
        let err = ensure_own_dir(&dir_link, 0o700).expect_err("a link");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(fs::read(outside.join("f")).expect("read"), b"precious");
    }

    #[test]
    fn octal_modes_parse_like_the_collector() {
        assert_eq!(parse_octal_mode("0750"), Ok(0o750));
        assert_eq!(parse_octal_mode("700"), Ok(0o700));
        assert!(parse_octal_mode("0x1ed").is_err());
        assert!(parse_octal_mode("0800").is_err());
        assert!(parse_octal_mode("").is_err());
        assert!(parse_octal_mode("17777").is_err());
    }
}
