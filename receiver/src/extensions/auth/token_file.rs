//! Reading a secret file (`bearertokenauth::filename`) safely and noticing
//! when it changes.
//!
//! The file itself must be a regular file, not a symbolic link: it is opened
//! with `O_NOFOLLOW`, so that whoever can write the file's directory cannot
//! point the agent (root) at another file and have it sent to an exporter's
//! backend. Directories on the path may be links (Kubernetes secret volumes
//! swap their `..data` link; point `filename` at `..data/<key>`). A FIFO or
//! device is refused without blocking (`O_NONBLOCK`, then `fstat`). At most
//! [`MAX_FILE_LEN`] bytes are read.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::SystemTime;

/// Largest token file read.
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// What identifies one version of the file: when any part changes, it is
/// read again. Taken without following a link, so a file replaced by a
/// link is noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    is_link: bool,
}

/// The version of the file at `path` now; None when it cannot be looked at
/// (then the next look that can is a change).
pub fn version(path: &Path) -> Option<Version> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(Version {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
        is_link: m.file_type().is_symlink(),
    })
}

/// The tokens in the file at `path`: one per non-empty line, surrounding
/// white space trimmed. Errors name the file, never its content.
pub fn read_tokens(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!("token file {shown} is a symbolic link; give the path of the file itself")
            } else {
                format!("cannot read token file {shown}: {e}")
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read token file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("token file {shown} is not a regular file"));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(format!(
            "token file {shown} is larger than {MAX_FILE_LEN} bytes"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read token file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "token file {shown} is larger than {MAX_FILE_LEN} bytes"
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("token file {shown} is not UTF-8 text"))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err(format!("token file {shown} holds no token"));
    }
    if let Some(n) = tokens.iter().position(|t| !valid_token(t)) {
        return Err(format!(
            "token file {shown}: token {} contains characters not allowed in an HTTP header \
             (visible ASCII and spaces only)",
            n + 1
        ));
    }
    Ok(tokens)
}

/// A token must fit in a header value after `scheme `: visible ASCII or
/// spaces, bounded.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= super::MAX_CREDENTIALS_LEN / 2
        && token.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}
