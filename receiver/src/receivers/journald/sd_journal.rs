//! libsystemd's sd-journal, loaded with `dlopen` when a `journald`
//! receiver first opens a journal: an agent without one does not map
//! libsystemd and its libraries (libgcrypt, liblz4, libzstd, liblzma, about
//! 1.2 MiB of resident pages), and the binary starts on hosts and images
//! that lack libsystemd; there only the `journald` receiver fails, with a
//! clear error.
//!
//! Only the calls the receiver makes are bound, with the signatures of
//! `sd-journal.h` (stable since systemd 209). Data handed out borrows the
//! [`Journal`] mutably: libsystemd keeps it valid only until the next call
//! on the journal.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::Duration;

/// The library's file name (the ABI's soname), as the dynamic loader finds it.
const LIBRARY: &str = "libsystemd.so.0";

/// `sd_journal_open` flags.
const SD_JOURNAL_LOCAL_ONLY: c_int = 1 << 0;
const SD_JOURNAL_OS_ROOT: c_int = 1 << 4;

/// `sd_journal_wait` and `sd_journal_process` results.
const SD_JOURNAL_NOP: c_int = 0;
const SD_JOURNAL_APPEND: c_int = 1;
const SD_JOURNAL_INVALIDATE: c_int = 2;

#[repr(C)]
struct SdJournal {
    _opaque: [u8; 0],
}

type J = *mut SdJournal;

/// The bound functions. The library is never unloaded: the pointers stay
/// valid for the process's life.
struct Api {
    _library: libloading::Library,
    open: unsafe extern "C" fn(*mut J, c_int) -> c_int,
    open_directory: unsafe extern "C" fn(*mut J, *const c_char, c_int) -> c_int,
    open_files: unsafe extern "C" fn(*mut J, *const *const c_char, c_int) -> c_int,
    close: unsafe extern "C" fn(J),
    set_data_threshold: unsafe extern "C" fn(J, usize) -> c_int,
    add_match: unsafe extern "C" fn(J, *const c_void, usize) -> c_int,
    add_disjunction: unsafe extern "C" fn(J) -> c_int,
    add_conjunction: unsafe extern "C" fn(J) -> c_int,
    query_unique: unsafe extern "C" fn(J, *const c_char) -> c_int,
    enumerate_unique: unsafe extern "C" fn(J, *mut *const c_void, *mut usize) -> c_int,
    seek_head: unsafe extern "C" fn(J) -> c_int,
    seek_tail: unsafe extern "C" fn(J) -> c_int,
    seek_cursor: unsafe extern "C" fn(J, *const c_char) -> c_int,
    next: unsafe extern "C" fn(J) -> c_int,
    previous: unsafe extern "C" fn(J) -> c_int,
    get_cursor: unsafe extern "C" fn(J, *mut *mut c_char) -> c_int,
    test_cursor: unsafe extern "C" fn(J, *const c_char) -> c_int,
    get_realtime_usec: unsafe extern "C" fn(J, *mut u64) -> c_int,
    get_data: unsafe extern "C" fn(J, *const c_char, *mut *const c_void, *mut usize) -> c_int,
    restart_data: unsafe extern "C" fn(J),
    enumerate_data: unsafe extern "C" fn(J, *mut *const c_void, *mut usize) -> c_int,
    get_fd: unsafe extern "C" fn(J) -> c_int,
    process: unsafe extern "C" fn(J) -> c_int,
    wait: unsafe extern "C" fn(J, u64) -> c_int,
}

impl Api {
    fn load() -> Result<Api, String> {
        // SAFETY: libsystemd's initialisers only set up its own state.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
            format!("cannot load {LIBRARY} (the journald receiver needs libsystemd): {e}")
        })?;
        macro_rules! bind {
            ($name:literal) => {
                // SAFETY: the type is the function's in sd-journal.h; the
                // pointer is copied out and used only while `library`
                // lives (it is kept in `Api`, which is never dropped).
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{LIBRARY} has no {}: {e}", $name))?
            };
        }
        Ok(Api {
            open: bind!("sd_journal_open"),
            open_directory: bind!("sd_journal_open_directory"),
            open_files: bind!("sd_journal_open_files"),
            close: bind!("sd_journal_close"),
            set_data_threshold: bind!("sd_journal_set_data_threshold"),
            add_match: bind!("sd_journal_add_match"),
            add_disjunction: bind!("sd_journal_add_disjunction"),
            add_conjunction: bind!("sd_journal_add_conjunction"),
            query_unique: bind!("sd_journal_query_unique"),
            enumerate_unique: bind!("sd_journal_enumerate_unique"),
            seek_head: bind!("sd_journal_seek_head"),
            seek_tail: bind!("sd_journal_seek_tail"),
            seek_cursor: bind!("sd_journal_seek_cursor"),
            next: bind!("sd_journal_next"),
            previous: bind!("sd_journal_previous"),
            get_cursor: bind!("sd_journal_get_cursor"),
            test_cursor: bind!("sd_journal_test_cursor"),
            get_realtime_usec: bind!("sd_journal_get_realtime_usec"),
            get_data: bind!("sd_journal_get_data"),
            restart_data: bind!("sd_journal_restart_data"),
            enumerate_data: bind!("sd_journal_enumerate_data"),
            get_fd: bind!("sd_journal_get_fd"),
            process: bind!("sd_journal_process"),
            wait: bind!("sd_journal_wait"),
            _library: library,
        })
    }
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> Result<&'static Api, Error> {
    API.get_or_init(Api::load)
        .as_ref()
        .map_err(|e| Error::Unavailable(e.clone()))
}

/// Whether libsystemd can be loaded here (`oomscope doctor`); the reason
/// when not.
pub fn available() -> Result<(), String> {
    api().map(|_| ()).map_err(|e| e.to_string())
}

/// A failed sd-journal call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// libsystemd could not be loaded.
    Unavailable(String),
    /// The call returned `-errno`.
    Call { call: &'static str, errno: i32 },
    /// An argument libsystemd cannot take (a NUL inside a string).
    Argument(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(why) => f.write_str(why),
            Error::Call { call, errno } => {
                write!(f, "{call}: {}", std::io::Error::from_raw_os_error(*errno))
            }
            Error::Argument(what) => write!(f, "{what} contains a NUL byte"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The errno of a failed call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Call { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// `r` as a result: sd-journal returns `-errno` on failure.
fn check(call: &'static str, r: c_int) -> Result<c_int, Error> {
    if r < 0 {
        Err(Error::Call {
            call,
            errno: r.saturating_neg(),
        })
    } else {
        Ok(r)
    }
}

fn c_string(s: &str, what: &'static str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Argument(what))
}

/// A field name as libsystemd wants it: `name_nul` ends with `\0` (no
/// allocation per call on the reading path), or is copied.
fn c_name(name_nul: &str) -> Result<std::borrow::Cow<'_, CStr>, Error> {
    match CStr::from_bytes_with_nul(name_nul.as_bytes()) {
        Ok(c) => Ok(std::borrow::Cow::Borrowed(c)),
        Err(_) => c_string(name_nul, "a field name").map(std::borrow::Cow::Owned),
    }
}

/// What a wait or `process` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    Nop,
    /// Entries were appended.
    Append,
    /// Files were added or removed (rotation, vacuuming).
    Invalidate,
}

fn wait_result(call: &'static str, r: c_int) -> Result<WaitResult, Error> {
    match check(call, r)? {
        SD_JOURNAL_NOP => Ok(WaitResult::Nop),
        SD_JOURNAL_APPEND => Ok(WaitResult::Append),
        SD_JOURNAL_INVALIDATE => Ok(WaitResult::Invalidate),
        // A newer libsystemd's other change: taken as files having changed.
        _ => Ok(WaitResult::Invalidate),
    }
}

/// One `NAME=value` item of an entry (or of a field's unique values),
/// borrowed from libsystemd.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a>(&'a [u8]);

impl<'a> Field<'a> {
    /// The part before `=` (the whole item when there is none).
    pub fn name(&self) -> &'a [u8] {
        let end = memchr::memchr(b'=', self.0).unwrap_or(self.0.len());
        &self.0[..end]
    }

    /// The part after the first `=`; `None` when there is none.
    pub fn value(&self) -> Option<&'a [u8]> {
        memchr::memchr(b'=', self.0).map(|i| &self.0[i + 1..])
    }
}

/// An open journal. Not `Send` (sd-journal is not thread-safe): it stays on
/// the thread that opened it.
pub struct Journal {
    j: J,
    api: &'static Api,
    /// `*mut` keeps it `!Send` and `!Sync` like the handle it wraps.
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl Journal {
    fn opened(call: &'static str, open: impl FnOnce(&Api, *mut J) -> c_int) -> Result<Self, Error> {
        let api = api()?;
        let mut j: J = std::ptr::null_mut();
        check(call, open(api, &mut j))?;
        if j.is_null() {
            return Err(Error::Call {
                call,
                errno: libc::EINVAL,
            });
        }
        Ok(Journal {
            j,
            api,
            _not_send: std::marker::PhantomData,
        })
    }

    /// The local system's journal (`journalctl`'s default, this machine's
    /// entries only).
    pub fn open_local() -> Result<Self, Error> {
        // SAFETY: a valid out pointer and flags.
        Self::opened("sd_journal_open", |api, j| unsafe {
            (api.open)(j, SD_JOURNAL_LOCAL_ONLY)
        })
    }

    /// The journal files in `directory`, or with `os_root` the system
    /// journal of the root mounted there.
    pub fn open_directory(directory: &str, os_root: bool) -> Result<Self, Error> {
        let dir = c_string(directory, "the journal directory")?;
        let flags = if os_root { SD_JOURNAL_OS_ROOT } else { 0 };
        // SAFETY: a valid out pointer and a NUL-terminated path.
        Self::opened("sd_journal_open_directory", |api, j| unsafe {
            (api.open_directory)(j, dir.as_ptr(), flags)
        })
    }

    /// These journal files.
    pub fn open_files(files: &[String]) -> Result<Self, Error> {
        let names = files
            .iter()
            .map(|f| c_string(f, "a journal file name"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        pointers.push(std::ptr::null());
        // SAFETY: a NULL-terminated array of NUL-terminated paths, alive
        // for the call (libsystemd copies them).
        Self::opened("sd_journal_open_files", |api, j| unsafe {
            (api.open_files)(j, pointers.as_ptr(), 0)
        })
    }

    /// The longest field libsystemd decompresses whole for `get_data`.
    pub fn set_data_threshold(&mut self, bytes: usize) -> Result<(), Error> {
        // SAFETY: an open journal.
        check("sd_journal_set_data_threshold", unsafe {
            (self.api.set_data_threshold)(self.j, bytes)
        })
        .map(drop)
    }

    /// Adds the match `field=value`.
    pub fn match_add(&mut self, field: &str, value: &[u8]) -> Result<(), Error> {
        let mut item = Vec::with_capacity(field.len() + 1 + value.len());
        item.extend_from_slice(field.as_bytes());
        item.push(b'=');
        item.extend_from_slice(value);
        // SAFETY: an open journal; libsystemd copies the bytes.
        check("sd_journal_add_match", unsafe {
            (self.api.add_match)(self.j, item.as_ptr().cast(), item.len())
        })
        .map(drop)
    }

    /// OR between the matches before and after.
    pub fn match_or(&mut self) -> Result<(), Error> {
        // SAFETY: an open journal.
        check("sd_journal_add_disjunction", unsafe {
            (self.api.add_disjunction)(self.j)
        })
        .map(drop)
    }

    /// AND between the matches before and after.
    pub fn match_and(&mut self) -> Result<(), Error> {
        // SAFETY: an open journal.
        check("sd_journal_add_conjunction", unsafe {
            (self.api.add_conjunction)(self.j)
        })
        .map(drop)
    }

    /// Starts listing the distinct values of `field`.
    pub fn query_unique(&mut self, field: &str) -> Result<(), Error> {
        let field = c_string(field, "a field name")?;
        // SAFETY: an open journal and a NUL-terminated name.
        check("sd_journal_query_unique", unsafe {
            (self.api.query_unique)(self.j, field.as_ptr())
        })
        .map(drop)
    }

    /// The next distinct value (`FIELD=value`); `None` after the last.
    pub fn enumerate_unique(&mut self) -> Result<Option<Field<'_>>, Error> {
        let (api, j) = (self.api, self.j);
        // SAFETY: an open journal and valid out pointers.
        self.item("sd_journal_enumerate_unique", |data, len| unsafe {
            (api.enumerate_unique)(j, data, len)
        })
    }

    pub fn seek_head(&mut self) -> Result<(), Error> {
        // SAFETY: an open journal.
        check("sd_journal_seek_head", unsafe {
            (self.api.seek_head)(self.j)
        })
        .map(drop)
    }

    pub fn seek_tail(&mut self) -> Result<(), Error> {
        // SAFETY: an open journal.
        check("sd_journal_seek_tail", unsafe {
            (self.api.seek_tail)(self.j)
        })
        .map(drop)
    }

    pub fn seek_cursor(&mut self, cursor: &str) -> Result<(), Error> {
        let cursor = c_string(cursor, "a cursor")?;
        // SAFETY: an open journal and a NUL-terminated cursor.
        check("sd_journal_seek_cursor", unsafe {
            (self.api.seek_cursor)(self.j, cursor.as_ptr())
        })
        .map(drop)
    }

    /// Moves to the next entry: 1, or 0 at the end. (sd-journal's name; a
    /// cursor, not an iterator.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<u64, Error> {
        // SAFETY: an open journal.
        check("sd_journal_next", unsafe { (self.api.next)(self.j) })
            .map(|n| n.unsigned_abs().into())
    }

    /// Moves to the previous entry: 1, or 0 at the start.
    pub fn previous(&mut self) -> Result<u64, Error> {
        // SAFETY: an open journal.
        check("sd_journal_previous", unsafe {
            (self.api.previous)(self.j)
        })
        .map(|n| n.unsigned_abs().into())
    }

    /// The current entry's cursor.
    pub fn cursor(&mut self) -> Result<String, Error> {
        let mut text: *mut c_char = std::ptr::null_mut();
        // SAFETY: an open journal and a valid out pointer.
        check("sd_journal_get_cursor", unsafe {
            (self.api.get_cursor)(self.j, &mut text)
        })?;
        if text.is_null() {
            return Err(Error::Call {
                call: "sd_journal_get_cursor",
                errno: libc::EINVAL,
            });
        }
        // SAFETY: libsystemd returned a malloc'ed NUL-terminated string,
        // ours to free.
        let cursor = unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: as above; not used after.
        unsafe { libc::free(text.cast()) };
        Ok(cursor)
    }

    /// Whether the current entry is the one of `cursor`.
    pub fn test_cursor(&mut self, cursor: &str) -> Result<bool, Error> {
        let cursor = c_string(cursor, "a cursor")?;
        // SAFETY: an open journal and a NUL-terminated cursor.
        check("sd_journal_test_cursor", unsafe {
            (self.api.test_cursor)(self.j, cursor.as_ptr())
        })
        .map(|r| r > 0)
    }

    /// When the current entry was written (microseconds since the epoch).
    pub fn timestamp_usec(&mut self) -> Result<u64, Error> {
        let mut usec = 0u64;
        // SAFETY: an open journal and a valid out pointer.
        check("sd_journal_get_realtime_usec", unsafe {
            (self.api.get_realtime_usec)(self.j, &mut usec)
        })?;
        Ok(usec)
    }

    /// The current entry's field `name_nul` (best ending with `\0`);
    /// `None` when the entry has none.
    pub fn get_data(&mut self, name_nul: &str) -> Result<Option<Field<'_>>, Error> {
        let name = c_name(name_nul)?;
        let (api, j) = (self.api, self.j);
        let found = self.item("sd_journal_get_data", |data, len| {
            // SAFETY: an open journal, a NUL-terminated name and valid out
            // pointers; a missing field is -ENOENT, an end of nothing.
            match unsafe { (api.get_data)(j, name.as_ptr(), data, len) } {
                0 => 1,
                r => r,
            }
        });
        match found {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            other => other,
        }
    }

    /// Starts the current entry's fields over for [`Journal::enumerate_data`].
    pub fn restart_data(&mut self) {
        // SAFETY: an open journal.
        unsafe { (self.api.restart_data)(self.j) }
    }

    /// The current entry's next field; `None` after the last.
    pub fn enumerate_data(&mut self) -> Result<Option<Field<'_>>, Error> {
        let (api, j) = (self.api, self.j);
        // SAFETY: an open journal and valid out pointers.
        self.item("sd_journal_enumerate_data", |data, len| unsafe {
            (api.enumerate_data)(j, data, len)
        })
    }

    /// A call that hands out `data` and `len`: positive with an item, 0 at
    /// the end.
    fn item(
        &mut self,
        call: &'static str,
        f: impl FnOnce(*mut *const c_void, *mut usize) -> c_int,
    ) -> Result<Option<Field<'_>>, Error> {
        let mut data: *const c_void = std::ptr::null();
        let mut len = 0usize;
        if check(call, f(&mut data, &mut len))? == 0 || data.is_null() {
            return Ok(None);
        }
        // SAFETY: libsystemd's bytes (in the file's mapping or its
        // decompression buffer) stay valid until the next call on the
        // journal, which the `&mut self` borrow of the result rules out.
        Ok(Some(Field(unsafe {
            std::slice::from_raw_parts(data.cast::<u8>(), len)
        })))
    }

    /// The inotify fd that becomes readable when the journal changes.
    pub fn fd(&mut self) -> Result<RawFd, Error> {
        // SAFETY: an open journal.
        check("sd_journal_get_fd", unsafe { (self.api.get_fd)(self.j) })
    }

    /// Takes in what the fd reported.
    pub fn process(&mut self) -> Result<WaitResult, Error> {
        // SAFETY: an open journal.
        wait_result("sd_journal_process", unsafe { (self.api.process)(self.j) })
    }

    /// Waits up to `timeout` (forever with `None`) for a change.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<WaitResult, Error> {
        let usec = timeout.map_or(u64::MAX, |t| {
            u64::try_from(t.as_micros()).unwrap_or(u64::MAX - 1)
        });
        // SAFETY: an open journal.
        wait_result("sd_journal_wait", unsafe { (self.api.wait)(self.j, usec) })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: opened by us, closed once.
        unsafe { (self.api.close)(self.j) }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_split_at_its_first_equals_sign() {
        let f = Field(b"MESSAGE=a=b");
        assert_eq!(f.name(), b"MESSAGE");
        assert_eq!(f.value(), Some(b"a=b".as_slice()));
        let binary = Field(b"NAME");
        assert_eq!(binary.name(), b"NAME");
        assert_eq!(binary.value(), None);
        assert_eq!(Field(b"EMPTY=").value(), Some(b"".as_slice()));
    }

    #[test]
    fn errors_say_the_call_and_the_errno() {
        let e = check("sd_journal_next", -libc::EBADMSG).expect_err("an errno");
        assert_eq!(e.errno(), Some(libc::EBADMSG));
        assert!(e.to_string().starts_with("sd_journal_next: "), "{e}");
        assert_eq!(check("sd_journal_next", 1), Ok(1));
        assert!(matches!(
            c_string("a\0b", "a cursor"),
            Err(Error::Argument("a cursor"))
        ));
    }

    #[test]
    fn field_names_with_a_nul_are_borrowed_others_copied() {
        assert!(matches!(
            c_name("MESSAGE\0"),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
        assert!(matches!(c_name("MESSAGE"), Ok(std::borrow::Cow::Owned(_))));
        assert!(c_name("ME\0SSAGE\0").is_err());
    }

    /// Opening a missing directory is an error from libsystemd (loaded for
    /// real), not a crash; an empty directory is an empty journal.
    #[test]
    fn a_real_libsystemd_opens_an_empty_directory() {
        if let Err(why) = available() {
            eprintln!("skipped: {why}");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::open_directory(dir.path().to_str().expect("utf-8"), false)
            .expect("open an empty directory");
        j.seek_head().expect("seek");
        assert_eq!(j.next().expect("next"), 0);
        assert!(j.cursor().is_err(), "no entry, no cursor");
    }
}
