//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

/// Reads a fuzz input front to back: option bytes first, the rest as data.
/// Missing bytes read as 0, so every input is valid.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// An empty directory for this run of a target, under `$TMPDIR` (tmpfs in
/// `scripts/fuzz.sh`): emptied on every call, so each input starts afresh.
pub fn scratch_dir(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oomscope-fuzz-{target}-{}", std::process::id()));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot empty the scratch directory {}: {e}", dir.display()),
    }
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// An anonymous in-memory file holding `data` (a real file descriptor, as
/// the file readers need).
pub fn memfd(data: &[u8]) -> File {
    // SAFETY: a plain syscall with a NUL-terminated name; the descriptor it
    // returns is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"oomscope-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(data).expect("write memfd");
    file
}
