//! Opening the journal (libsystemd's sd-journal, see [`super::sd_journal`]),
//! its filters with journalctl's semantics, and where reading
//! starts: a checkpoint's cursor (telling whether its entry still exists),
//! the head or the tail.
//!
//! A [`Journal`] is not `Send`: everything here runs on the receiver's
//! reading thread.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::sd_journal::{Error, Journal, WaitResult};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, CursorFields, Resume};
use super::config::JournaldReceiverConfig;

/// A field of the current entry: its value (after `NAME=`), borrowed from
/// libsystemd until the next call on the journal.
pub fn field<'a>(journal: &'a mut Journal, name_nul: &str) -> Result<Option<&'a [u8]>, Error> {
    Ok(journal
        .get_data(name_nul)?
        .map(|data| data.value().unwrap_or_default()))
}

/// [`field`], an unreadable one (a corrupt object) taken as absent.
pub fn field_opt<'a>(journal: &'a mut Journal, name_nul: &str) -> Option<&'a [u8]> {
    field(journal, name_nul).ok().flatten()
}

/// A field as text (invalid UTF-8 replaced), at most `max` bytes of it.
pub fn field_string(journal: &mut Journal, name_nul: &str, max: usize) -> Option<String> {
    field_opt(journal, name_nul).map(|v| lossy_bounded(v, max).0)
}

/// `bytes` as text, cut at `max` bytes (on a character boundary); true when cut.
pub fn lossy_bounded(bytes: &[u8], max: usize) -> (String, bool) {
    let cut = bytes.len() > max;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut text = text.into_owned();
    if text.len() > max {
        // Replacement characters are longer than the bytes they replace.
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    (text, cut)
}

/// A field parsed as an integer.
pub fn field_int(journal: &mut Journal, name_nul: &str) -> Option<i64> {
    field_opt(journal, name_nul)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Where the receiver's journal files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The local system journal (journalctl's default).
    System,
    /// The system journal of the host whose root is mounted here.
    OsRoot(PathBuf),
    /// A directory (and its machine-id subdirectories).
    Directory(PathBuf),
    /// Files matching these globs.
    Files(Vec<String>),
}

impl Location {
    pub fn of(cfg: &JournaldReceiverConfig) -> Location {
        if let Some(dir) = &cfg.directory {
            Location::Directory(dir.clone())
        } else if !cfg.files.is_empty() {
            Location::Files(cfg.files.clone())
        } else if let Some(root) = cfg
            .root_path
            .as_ref()
            .filter(|r| r.as_path() != Path::new("/"))
        {
            Location::OsRoot(root.clone())
        } else {
            Location::System
        }
    }

    /// The directories whose journal files this location reads (for
    /// noticing one that appears, and for checking file headers).
    pub fn directories(&self) -> Vec<PathBuf> {
        let root = match self {
            Location::System => Path::new("/"),
            Location::OsRoot(root) => root.as_path(),
            Location::Directory(dir) => return vec![dir.clone()],
            Location::Files(_) => return Vec::new(),
        };
        vec![root.join("var/log/journal"), root.join("run/log/journal")]
    }

    /// The files `Files` globs match now, sorted.
    pub fn expand_files(&self) -> Vec<PathBuf> {
        let Location::Files(globs) = self else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = globs
            .iter()
            .filter_map(|g| glob::glob(g).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .take(MAX_FILES)
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Whether libsystemd is told about changes (inotify); `files` are
    /// followed by polling.
    pub fn is_watched(&self) -> bool {
        !matches!(self, Location::Files(_))
    }
}

/// Most files `files` may name.
const MAX_FILES: usize = 4096;

/// Why the journal could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The directory, or every file, is missing: looked for again later.
    Missing(String),
    /// The directories are there but hold no journal file yet (no journald
    /// on this host, or not yet started): libsystemd is not loaded for it.
    NoJournalYet(String),
    /// libsystemd cannot be loaded: it will not be later either.
    Unavailable(String),
    Failed(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing(m)
            | OpenError::NoJournalYet(m)
            | OpenError::Unavailable(m)
            | OpenError::Failed(m) => f.write_str(m),
        }
    }
}

/// Opens the journal files of `location`, with the data threshold (the
/// longest field libsystemd decompresses whole for us) and no filter.
pub fn open(
    location: &Location,
    data_threshold: usize,
) -> Result<(Journal, Vec<PathBuf>), OpenError> {
    let failed = |what: &str, err: Error| match err {
        Error::Unavailable(why) => OpenError::Unavailable(why),
        err => OpenError::Failed(format!("{what}: {err}")),
    };
    let (mut journal, files) = match location {
        Location::System => {
            journal_file_exists(location)?;
            (
                Journal::open_local().map_err(|e| failed("opening the system journal", e))?,
                Vec::new(),
            )
        }
        Location::OsRoot(root) => {
            if !root.is_dir() {
                return Err(OpenError::Missing(format!(
                    "{} does not exist",
                    root.display()
                )));
            }
            journal_file_exists(location)?;
            let journal = Journal::open_directory(path_str(root)?, true)
                .map_err(|e| failed(&format!("opening the journal under {}", root.display()), e))?;
            (journal, Vec::new())
        }
        Location::Directory(dir) => {
            if !dir.is_dir() {
                return Err(OpenError::Missing(format!(
                    "{} does not exist (yet)",
                    dir.display()
                )));
            }
            journal_file_exists(location)?;
            let journal = Journal::open_directory(path_str(dir)?, false)
                .map_err(|e| failed(&format!("opening {}", dir.display()), e))?;
            (journal, Vec::new())
        }
        Location::Files(globs) => {
            let files = location.expand_files();
            if files.is_empty() {
                return Err(OpenError::Missing(format!(
                    "no file matches {globs:?} (yet)"
                )));
            }
            let names = files
                .iter()
                .map(|p| path_str(p).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            let journal =
                Journal::open_files(&names).map_err(|e| failed("opening the journal files", e))?;
            (journal, files)
        }
    };
    journal
        .set_data_threshold(data_threshold)
        .map_err(|e| failed("setting the data threshold", e))?;
    Ok((journal, files))
}

/// `NoJournalYet` unless one of the location's directories holds a journal
/// file: until then, libsystemd and the six libraries it needs (about
/// 1.2 MiB of RSS) stay out of the agent.
fn journal_file_exists(location: &Location) -> Result<(), OpenError> {
    let dirs = location.directories();
    if any_journal_file(&dirs) {
        Ok(())
    } else {
        Err(OpenError::NoJournalYet(format!(
            "no journal file in {dirs:?} or their subdirectories"
        )))
    }
}

/// Whether one of `dirs`, or a subdirectory of one (journald writes into
/// `<machine-id>/`), holds a journal file (`*.journal`, or `*.journal~`
/// for one journald set aside). A directory that cannot be read, or holds
/// more entries than are worth listing, counts as holding one: libsystemd
/// then opens it and says what is wrong.
pub fn any_journal_file(dirs: &[PathBuf]) -> bool {
    /// Entries listed at most before giving up and opening.
    const MAX_ENTRIES: usize = 4096;
    fn is_journal(name: &std::ffi::OsStr) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        let name = name.as_bytes();
        name.ends_with(b".journal") || name.ends_with(b".journal~")
    }
    /// Whether `dir` holds one (or cannot be told); its subdirectories
    /// into `subdirs`, when given.
    fn holds_one(dir: &Path, listed: &mut usize, mut subdirs: Option<&mut Vec<PathBuf>>) -> bool {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
        };
        for entry in entries {
            *listed += 1;
            let Ok(entry) = entry else { return true };
            if *listed > MAX_ENTRIES || is_journal(&entry.file_name()) {
                return true;
            }
            if let Some(subdirs) = subdirs.as_deref_mut() {
                let path = entry.path();
                if path.is_dir() {
                    subdirs.push(path);
                }
            }
        }
        false
    }
    let mut listed = 0usize;
    dirs.iter().any(|dir| {
        let mut subdirs = Vec::new();
        holds_one(dir, &mut listed, Some(&mut subdirs))
            || subdirs.iter().any(|sub| holds_one(sub, &mut listed, None))
    })
}

fn path_str(p: &Path) -> Result<&str, OpenError> {
    p.to_str()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| OpenError::Failed(format!("{} is not a UTF-8 path", p.display())))
}

/// The filters of the config, added the way journalctl adds its options
/// (`--unit`, `--identifier`, `FIELD=value [+ ...]`): each option's terms
/// OR'ed, the options AND'ed. `priority` is not among them: it is checked
/// by the reader on the few entries that may become records, which costs
/// far less than a match on every entry (`--priority` AND'ed with the rest
/// selects the same entries).
pub fn add_filters(journal: &mut Journal, cfg: &JournaldReceiverConfig) -> Result<(), String> {
    let err = |e: Error| format!("adding a journal match: {e}");
    // Units first: a glob is expanded over the units the journal has now.
    let units = expand_units(journal, &cfg.units);
    if !cfg.units.is_empty() {
        if units.is_empty() {
            // No unit matched a glob: match nothing rather than everything.
            journal
                .match_add("_SYSTEMD_UNIT", "\u{1}oomscope-no-unit".as_bytes())
                .map_err(err)?;
        }
        for unit in &units {
            add_matches_for_unit(journal, unit).map_err(err)?;
            journal.match_or().map_err(err)?;
        }
        journal.match_and().map_err(err)?;
    }
    if !cfg.identifiers.is_empty() {
        for id in &cfg.identifiers {
            journal
                .match_add("SYSLOG_IDENTIFIER", id.as_bytes())
                .map_err(err)?;
        }
        journal.match_and().map_err(err)?;
    }
    for (i, map) in cfg.matches.iter().enumerate() {
        if i > 0 {
            journal.match_or().map_err(err)?;
        }
        for (field, value) in map {
            journal.match_add(field, value.as_bytes()).map_err(err)?;
        }
    }
    Ok(())
}

/// Whether any sd-journal match is configured.
pub fn has_filters(cfg: &JournaldReceiverConfig) -> bool {
    !cfg.units.is_empty() || !cfg.identifiers.is_empty() || !cfg.matches.is_empty()
}

/// journalctl's `add_matches_for_unit`: the unit's own entries, its
/// coredumps, systemd's messages about it and those of trusted daemons.
fn add_matches_for_unit(journal: &mut Journal, unit: &str) -> Result<(), Error> {
    let unit_bytes = unit.as_bytes();
    journal.match_add("_SYSTEMD_UNIT", unit_bytes)?;
    journal.match_or()?;
    journal.match_add("MESSAGE_ID", b"fc2e22bc6ee647b6b90729ab34a250b1")?;
    journal.match_add("_UID", b"0")?;
    journal.match_add("COREDUMP_UNIT", unit_bytes)?;
    journal.match_or()?;
    journal.match_add("_PID", b"1")?;
    journal.match_add("UNIT", unit_bytes)?;
    journal.match_or()?;
    journal.match_add("_UID", b"0")?;
    journal.match_add("OBJECT_SYSTEMD_UNIT", unit_bytes)?;
    if unit.ends_with(".slice") {
        journal.match_or()?;
        journal.match_add("_SYSTEMD_SLICE", unit_bytes)?;
    }
    Ok(())
}

/// Unit types a name can end with; a name without one is a service
/// (journalctl's unit name mangling: `ssh` is `ssh.service`).
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".slice",
    ".scope",
];

pub fn mangle_unit(name: &str) -> String {
    if UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) || is_glob(name) {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// Most distinct units looked at when expanding a glob.
const MAX_UNIQUE_UNITS: usize = 100_000;

/// The configured units, mangled; globs replaced by the units of the
/// journal they match (as journalctl does).
fn expand_units(journal: &mut Journal, units: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let globs: Vec<glob::Pattern> = units
        .iter()
        .filter(|u| is_glob(u))
        .filter_map(|u| glob::Pattern::new(u).ok())
        .collect();
    out.extend(units.iter().filter(|u| !is_glob(u)).map(|u| mangle_unit(u)));
    if !globs.is_empty() && journal.query_unique("_SYSTEMD_UNIT").is_ok() {
        let mut seen = 0;
        while let Ok(Some(data)) = journal.enumerate_unique() {
            seen += 1;
            if seen > MAX_UNIQUE_UNITS {
                break;
            }
            let Some(unit) = data.value().and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            if globs.iter().any(|g| g.matches(unit)) {
                out.push(unit.to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    Head,
    Tail,
    Cursor(Checkpoint),
}

/// Entries known to be gone between a checkpoint and the first entry
/// that is left (vacuumed while the agent was down or behind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The checkpoint's cursor.
    pub from_cursor: String,
    /// The first entry left after it.
    pub to_cursor: String,
    /// Most entries that can have been lost, when both cursors are of
    /// the same writer's sequence.
    pub at_most: Option<u64>,
    /// When the checkpoint's entry and the first one left were written
    /// (microseconds since the epoch).
    pub from_usec: Option<u64>,
    pub to_usec: Option<u64>,
}

/// Where the journal was positioned.
#[derive(Debug, Default)]
pub struct Positioned {
    /// The journal is on an entry not read yet (else the next `next()`
    /// gives the first one to read).
    pub on_unread_entry: bool,
    /// The tail's cursor when starting at the end (the first checkpoint).
    pub tail_cursor: Option<String>,
    /// The entry the journal stands on, read already (the tail's, or the
    /// checkpoint's): where a reopen resumes before anything else is read.
    pub standing_cursor: Option<String>,
    pub gap: Option<Gap>,
}

/// Positions a journal opened without filters, then adds the filters.
/// For a cursor, whether its entry still exists is found out without the
/// filters (a filtered-out entry is not a vacuumed one).
pub fn position(
    journal: &mut Journal,
    cfg: &JournaldReceiverConfig,
    start: &StartPosition,
) -> Result<Positioned, String> {
    let err = |what: &str, e: Error| format!("{what}: {e}");
    let mut out = Positioned::default();
    let filtered = has_filters(cfg);
    match start {
        StartPosition::Head => {
            add_filters(journal, cfg)?;
            journal
                .seek_head()
                .map_err(|e| err("seeking the head", e))?;
        }
        StartPosition::Tail => {
            add_filters(journal, cfg)?;
            journal
                .seek_tail()
                .map_err(|e| err("seeking the tail", e))?;
            // On the last entry (read already, by definition of the end).
            if journal.previous().map_err(|e| err("reading the tail", e))? > 0 {
                out.tail_cursor = journal.cursor().ok();
                out.standing_cursor.clone_from(&out.tail_cursor);
            }
        }
        StartPosition::Cursor(checkpoint) => {
            let cursor = checkpoint.cursor.as_str();
            journal
                .seek_cursor(cursor)
                .map_err(|e| err("seeking the checkpoint's cursor", e))?;
            let found = journal
                .next()
                .map_err(|e| err("reading after the checkpoint", e))?
                > 0;
            let exists = found && journal.test_cursor(cursor).unwrap_or(false);
            if found && !exists {
                out.gap = journal.cursor().ok().map(|to| gap(checkpoint, &to));
            }
            if filtered {
                add_filters(journal, cfg)?;
                journal
                    .seek_cursor(cursor)
                    .map_err(|e| err("seeking the checkpoint's cursor", e))?;
                let found = journal
                    .next()
                    .map_err(|e| err("reading after the checkpoint", e))?
                    > 0;
                let on_checkpoint = found && journal.test_cursor(cursor).unwrap_or(false);
                out.on_unread_entry =
                    found && !(on_checkpoint && checkpoint.resume == Resume::After);
            } else {
                out.on_unread_entry = found && !(exists && checkpoint.resume == Resume::After);
            }
            if exists && !out.on_unread_entry {
                out.standing_cursor = Some(checkpoint.cursor.clone());
            }
        }
    }
    Ok(out)
}

fn gap(checkpoint: &Checkpoint, to: &str) -> Gap {
    let from = CursorFields::parse(&checkpoint.cursor);
    let first = CursorFields::parse(to);
    let at_most = match (&from.seqnum_id, from.seqnum, &first.seqnum_id, first.seqnum) {
        (Some(a), Some(i), Some(b), Some(j)) if a == b && j > i => {
            // The checkpoint's own entry counts when it was to be read again.
            let own = u64::from(checkpoint.resume == Resume::At);
            Some(j - i - 1 + own)
        }
        _ => None,
    };
    Gap {
        from_cursor: checkpoint.cursor.clone(),
        to_cursor: to.to_owned(),
        at_most,
        from_usec: from.realtime_usec,
        to_usec: first.realtime_usec,
    }
}

/// The journal's change notification fd (`sd_journal_get_fd`: inotify),
/// registered with the runtime's reactor so that a wait for it can also
/// end at shutdown. Owned by the journal: a `Watch` must be dropped before
/// its journal.
pub struct Watch {
    fd: AsyncFd<JournalFd>,
    /// The wait's timeout: the kernel's timer, which wakes the runtime once
    /// (see `clock::KernelTimer`).
    timer: crate::clock::KernelTimer,
}

pub struct JournalFd(RawFd);

impl AsRawFd for JournalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Watch {
    /// Starts watching `journal` (in `handle`'s reactor). Also what the first
    /// `sd_journal_wait` does besides: drops files vacuumed since the
    /// journal was opened. Returns the change since it was opened as well.
    pub fn new(journal: &mut Journal, handle: &Handle) -> Result<(Self, WaitResult), String> {
        // A zero wait on a journal not yet watched creates its inotify fd,
        // forgets deleted files and returns at once.
        let changed = journal
            .wait(Some(Duration::ZERO))
            .map_err(|e| e.to_string())?;
        let fd = journal.fd().map_err(|e| e.to_string())?;
        let _entered = handle.enter();
        // SAFETY: the fd is the journal's and stays open and unchanged as
        // long as the journal lives, which outlives the `Watch` (see above).
        let fd = unsafe { AsyncFd::register_with_interest(JournalFd(fd), Interest::READABLE) }
            .map_err(|e| format!("registering the journal's fd: {}", e.into_parts().1))?;
        let timer = crate::clock::KernelTimer::new();
        Ok((Self { fd, timer }, changed))
    }

    /// Waits until the journal's fd is readable, `arrivals` reports
    /// something, `deadline` comes or `shutdown`, then has sd-journal take
    /// in what changed. Also returns whether `arrivals` reported (whether
    /// sd-journal's processing failed or not).
    pub fn wait(
        &mut self,
        journal: &mut Journal,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
        arrivals: Option<&Arrivals>,
        handle: &Handle,
    ) -> (Result<WaitResult, Error>, bool) {
        let arrived = handle.block_on(async {
            let arrival = async {
                match arrivals {
                    Some(a) => {
                        let _ = a.0.readable().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ready = self.fd.readable() => {
                    // Cleared before sd_journal_process drains the fd: an
                    // event that comes after the drain sets it again.
                    if let Ok(mut ready) = ready {
                        ready.clear_ready();
                    }
                    false
                }
                () = arrival => true,
                () = shutdown.cancelled() => false,
                () = self.timer.sleep_until(deadline) => false,
            }
        });
        (journal.process(), arrived)
    }
}

/// The journal directories that do not exist yet, watched for their
/// arrival: inotify on the nearest existing ancestor of each (entries
/// created in it or renamed into it), so that an idle reader need not look
/// for them every few seconds. Any event ends the wait; the reader then
/// looks for the directories and watches again (the nearest ancestor may
/// have changed: `/run/log` made on the way to `/run/log/journal`). The
/// events themselves are never read: the instance is dropped after one.
pub struct Arrivals(AsyncFd<OwnedFd>);

impl Arrivals {
    /// `None` when one of `missing` cannot be watched exactly: its nearest
    /// ancestor is not on a local file system (another host's changes make
    /// no event) or inotify refuses (`max_user_watches`).
    pub fn new(missing: &[PathBuf], handle: &Handle) -> Option<Self> {
        let fd = Self::init()?;
        Self::watch_ancestors(&fd, missing)?;
        Self::register(fd, handle)
    }

    /// Watches for a first journal file in `dirs`: entries made in each
    /// directory that exists and in its subdirectories (journald's
    /// `<machine-id>/`), and the arrival of each that does not. `None` as
    /// for [`Arrivals::new`].
    pub fn of_journal_files(dirs: &[PathBuf], handle: &Handle) -> Option<Self> {
        use crate::receivers::filelog::watch;
        use rustix::fs::inotify;
        /// Subdirectories watched at most per directory.
        const MAX_SUBDIRS: usize = 64;
        let fd = Self::init()?;
        let flags = watch::arrivals() | inotify::WatchFlags::ONLYDIR;
        let mut missing = Vec::new();
        for dir in dirs {
            if !dir.is_dir() {
                missing.push(dir.clone());
                continue;
            }
            if !watch::is_local(dir) {
                return None;
            }
            inotify::add_watch(&fd, dir, flags).ok()?;
            let subdirs = std::fs::read_dir(dir)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .take(MAX_SUBDIRS);
            for sub in subdirs {
                inotify::add_watch(&fd, &sub, flags).ok()?;
            }
        }
        Self::watch_ancestors(&fd, &missing)?;
        Self::register(fd, handle)
    }

    /// Resolves once an event came.
    pub async fn arrived(&self) {
        let _ = self.0.readable().await;
    }

    fn init() -> Option<OwnedFd> {
        use rustix::fs::inotify;
        inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()
    }

    fn watch_ancestors(fd: &OwnedFd, missing: &[PathBuf]) -> Option<()> {
        use crate::receivers::filelog::watch;
        use rustix::fs::inotify;
        for dir in missing {
            // The nearest ancestor again once its watch is added: a level
            // made in between (`mkdir -p`) would make no event, so the new
            // nearest ancestor is watched too.
            let mut watched = None;
            for _ in 0..dir.components().count() {
                let ancestor = watch::existing_ancestor(dir)?;
                if watched.as_ref() == Some(&ancestor) {
                    break;
                }
                if !watch::is_local(&ancestor) {
                    return None;
                }
                let flags = watch::arrivals() | inotify::WatchFlags::ONLYDIR;
                inotify::add_watch(fd, &ancestor, flags).ok()?;
                watched = Some(ancestor);
            }
        }
        Some(())
    }

    fn register(fd: OwnedFd, handle: &Handle) -> Option<Self> {
        let _entered = handle.enter();
        // SAFETY: the `AsyncFd` owns the fd, which so stays open for as
        // long as it is registered.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .ok()
            .map(Self)
    }

    /// Whether an event came within `timeout`.
    #[cfg(test)]
    pub fn reported_within(&self, timeout: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let timeout = Timespec::try_from(timeout).expect("a short timeout");
        let mut fds = [PollFd::new(self.0.get_ref(), PollFlags::IN)];
        poll(&mut fds, Some(&timeout)).expect("poll") > 0
    }
}

#[cfg(test)]
mod journal_file_tests {
    use super::*;

    /// A journal file is looked for in the directories and one level
    /// below (journald's `<machine-id>/`), never deeper.
    #[test]
    fn journal_files_are_found_where_journald_writes_them() {
        let root = tempfile::tempdir().expect("tempdir");
        let var = root.path().join("var-log-journal");
        let run = root.path().join("run-log-journal");
        std::fs::create_dir(&var).expect("mkdir");
        let dirs = [var.clone(), run.clone()];
        assert!(!any_journal_file(&dirs), "empty, and missing");

        let machine = var.join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir(&machine).expect("mkdir");
        std::fs::write(machine.join("notes.txt"), "").expect("write");
        assert!(!any_journal_file(&dirs), "no journal file");

        let deeper = machine.join("deeper");
        std::fs::create_dir(&deeper).expect("mkdir");
        std::fs::write(deeper.join("system.journal"), "").expect("write");
        assert!(!any_journal_file(&dirs), "two levels down is not read");

        std::fs::write(machine.join("user-1000@0005.journal~"), "").expect("write");
        assert!(any_journal_file(&dirs), "one journald set aside");
        std::fs::remove_file(machine.join("user-1000@0005.journal~")).expect("rm");

        std::fs::create_dir(&run).expect("mkdir");
        std::fs::write(run.join("system.journal"), "").expect("write");
        assert!(any_journal_file(&dirs), "directly in a directory");
    }

    /// The wait for a first journal file ends on a file made in a
    /// machine-id subdirectory, and on a directory that appears.
    #[tokio::test]
    async fn a_first_journal_file_ends_the_wait() {
        let handle = Handle::current();
        let root = tempfile::tempdir().expect("tempdir");
        let var = root.path().join("var/log/journal");
        let machine = var.join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&machine).expect("mkdir");
        let run = root.path().join("run/log/journal");
        let dirs = [var.clone(), run.clone()];

        let arrivals = Arrivals::of_journal_files(&dirs, &handle).expect("watchable");
        std::fs::write(machine.join("system.journal"), "").expect("write");
        assert!(arrivals.reported_within(Duration::from_secs(30)));
        arrivals.arrived().await;

        std::fs::remove_file(machine.join("system.journal")).expect("rm");
        let arrivals = Arrivals::of_journal_files(&dirs, &handle).expect("watchable");
        std::fs::create_dir_all(&run).expect("mkdir");
        assert!(arrivals.reported_within(Duration::from_secs(30)));
    }

    /// Until a file is there, opening says so and loads nothing.
    #[test]
    fn an_empty_directory_is_no_journal_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = Location::Directory(dir.path().to_path_buf());
        match open(&location, 1 << 16) {
            Err(OpenError::NoJournalYet(why)) => {
                assert!(why.contains(&dir.path().display().to_string()), "{why}");
            }
            other => panic!("expected NoJournalYet, got {:?}", other.map(|_| ())),
        }
        let gone = Location::Directory(dir.path().join("absent"));
        assert!(matches!(open(&gone, 1 << 16), Err(OpenError::Missing(_))));
    }
}
