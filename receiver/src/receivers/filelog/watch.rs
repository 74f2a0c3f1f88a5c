//! Waiting between polls for a change instead of for the next tick.
//!
//! The tailer polls every `poll_interval` (200 ms, as the collector's
//! `fileconsumer`). On an idle host that is five wake-ups a second that find
//! nothing, about half of the idle agent's CPU. When a poll did nothing and
//! nothing waits on time (no partial line, record or report held, no file
//! left `include`, every directory listing settled), the state is a fixed
//! point: only a change on disk can make a poll do something. The tailer
//! then waits on inotify watches on the directories the globs reach (which
//! report writes to, creations in and renames out of the files in them) and
//! on the nearest existing ancestor of each path the globs miss (which
//! reports its creation), with a poll every [`IDLE_POLL`] regardless
//! ([`IDLE_POLL_NOTHING_MATCHED`] while the tailer knows of no file).
//!
//! inotify is used only where it sees every change: local file systems
//! ([`LOCAL_FILE_SYSTEMS`]; on NFS or FUSE another host's writes make no
//! event), paths that are not symbolic links to files elsewhere (a write
//! shows in the target's directory), and at most [`MAX_WATCHES`]
//! directories. Anywhere else, or when a watch cannot be added (the user's
//! `max_user_watches`), the tailer polls every `poll_interval` as before.
//!
//! Events only end a wait early; what changed is found by the poll as
//! before. A wait ended by an event still polls no sooner than
//! `poll_interval` after the last poll began, so a busy file costs no more
//! polls than the ticks did.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify;
pub use rustix::fs::inotify::WatchFlags;

/// Longest wait while watching: a change inotify did not report (a write
/// through a shared mapping makes no event) is seen at most this late.
pub const IDLE_POLL: Duration = Duration::from_secs(5);
/// Longest wait while watching before any file matched (the tailer keeps
/// the files it knew of for a while after): nothing can change
/// unseen then but a file system mounted over a watched directory (a mount
/// makes no event). The shipped globs (Kubernetes' and Docker's logs)
/// match nothing on most hosts, where the shorter wait was most of the
/// tailer's idle cost.
pub const IDLE_POLL_NOTHING_MATCHED: Duration = Duration::from_secs(60);
/// Most directories watched; with more the tailer polls. Watches count
/// against the user's `fs.inotify.max_user_watches`, shared with every
/// process of that user (8192 on kernels before 5.11): at most a quarter
/// of it is taken.
pub const MAX_WATCHES: usize = 1024;

/// [`MAX_WATCHES`], or a quarter of the user's limit when that is lower.
pub fn watch_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map_or(MAX_WATCHES, |limit| MAX_WATCHES.min(limit / 4))
    })
}

/// `statfs` magic numbers of the file systems whose changes inotify sees
/// whoever makes them: ext2-4, XFS, Btrfs, tmpfs, overlayfs (a container's
/// writable layer), ZFS, F2FS, bcachefs.
const LOCAL_FILE_SYSTEMS: &[u64] = &[
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
    0x2FC1_2FC1, // ZFS
    0xF2F5_2010, // F2FS
    0xCA45_1A4E, // bcachefs
];

/// Directories whose entries the tailer reads: writes to their files,
/// entries created, removed or renamed, and the directory itself going.
pub fn contents() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
}

/// The nearest existing ancestor of a path the globs look for: entries
/// created in it or renamed into it.
pub fn arrivals() -> WatchFlags {
    WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::DELETE_SELF | WatchFlags::MOVE_SELF
}

/// The nearest ancestor of `path` (itself excluded) that is a directory.
pub fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.is_dir()))
        .map(Path::to_path_buf)
}

pub fn is_local(dir: &Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|s| {
        #[allow(clippy::unnecessary_cast)] // f_type is i64 or u32 by architecture
        let magic = (s.f_type as u64) & 0xFFFF_FFFF;
        LOCAL_FILE_SYSTEMS.contains(&magic)
    })
}

/// The watches of one set of directories, in one inotify instance.
#[derive(Default)]
pub struct Watches {
    /// The instance holding the watches of `watched`.
    fd: Option<OwnedFd>,
    /// The set watched.
    watched: Option<BTreeMap<PathBuf, WatchFlags>>,
    /// The last set that could not be watched, not tried again while wanted.
    failed: Option<BTreeMap<PathBuf, WatchFlags>>,
}

/// What [`Watches::watch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// The same set was already watched: a change since then is an event.
    Already,
    /// Watched from now on: a change before this is not (poll once more).
    Now,
    /// Cannot be watched exactly: poll.
    No,
}

impl Watches {
    /// Watches exactly `wanted` (directory -> events).
    pub fn watch(&mut self, wanted: BTreeMap<PathBuf, WatchFlags>) -> Armed {
        if self.watched.as_ref() == Some(&wanted) {
            return Armed::Already;
        }
        if self.failed.as_ref() == Some(&wanted) {
            return Armed::No;
        }
        self.unwatch();
        match Self::instance(&wanted) {
            Ok(fd) => {
                self.fd = Some(fd);
                self.watched = Some(wanted);
                self.failed = None;
                Armed::Now
            }
            Err(why) => {
                tracing::debug!("filelog: {why}; polling every poll_interval");
                self.failed = Some(wanted);
                Armed::No
            }
        }
    }

    /// A new inotify instance watching `wanted` (a new one rather than
    /// watches removed one by one: a directory reached under two names has
    /// one watch descriptor).
    fn instance(wanted: &BTreeMap<PathBuf, WatchFlags>) -> Result<OwnedFd, String> {
        if wanted.is_empty() {
            return Err("nothing to watch".into());
        }
        if wanted.len() > watch_budget() {
            return Err(format!("more than {} directories to watch", watch_budget()));
        }
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| format!("cannot create an inotify instance: {e}"))?;
        for (dir, flags) in wanted {
            if !is_local(dir) {
                return Err(format!("{} is not on a local file system", dir.display()));
            }
            inotify::add_watch(&fd, dir, *flags | WatchFlags::ONLYDIR)
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        }
        Ok(fd)
    }

    /// Stops watching (closing the instance removes its watches).
    pub fn unwatch(&mut self) {
        self.fd = None;
        self.watched = None;
    }

    /// The instance, while watching.
    fn watching(&self) -> Option<&OwnedFd> {
        self.fd.as_ref().filter(|_| self.watched.is_some())
    }

    #[cfg(test)]
    pub fn is_watching(&self) -> bool {
        self.watching().is_some()
    }

    /// Reads away the events so far (a poll follows, which sees their
    /// changes); true when there were any.
    pub fn drain(&self) -> bool {
        let Some(fd) = self.watching() else {
            return false;
        };
        let mut buf = [0u8; 4096];
        let mut any = false;
        // Each read takes at most a buffer; the kernel bounds the queue
        // (`max_queued_events`, then one overflow event).
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

/// The tailer's wait between polls: on its wake-up eventfd (written at
/// shutdown) and, while watching, on the inotify instance.
pub struct Waiter {
    wake: std::sync::Arc<OwnedFd>,
}

impl Waiter {
    /// `wake` becomes readable when the tailer must stop.
    pub fn new(wake: std::sync::Arc<OwnedFd>) -> Self {
        Self { wake }
    }

    /// Waits `timeout`, or until `changes` reports a change (then until
    /// `not_before`), or until woken.
    pub fn wait(&self, timeout: Duration, changes: Option<&Watches>, not_before: Instant) {
        let Some(changes) = changes.and_then(Watches::watching) else {
            self.sleep(timeout);
            return;
        };
        let wake = self.wake.as_fd();
        let mut fds = [
            PollFd::new(&wake, PollFlags::IN),
            PollFd::new(changes, PollFlags::IN),
        ];
        let _ = poll(&mut fds, timeout);
        let woken = !fds[0].revents().is_empty();
        let changed = !fds[1].revents().is_empty();
        if changed && !woken {
            self.sleep(not_before.saturating_duration_since(Instant::now()));
        }
    }

    fn sleep(&self, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        let wake = self.wake.as_fd();
        let _ = poll(&mut [PollFd::new(&wake, PollFlags::IN)], timeout);
    }
}

fn poll(fds: &mut [PollFd<'_>], timeout: Duration) -> rustix::io::Result<usize> {
    let timeout = rustix::event::Timespec::try_from(timeout).ok();
    loop {
        match rustix::event::poll(fds, timeout.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Makes the tailer's wake-up eventfd readable.
pub fn wake(fd: &OwnedFd) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

pub fn wake_fd() -> std::io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(dir: &Path, flags: WatchFlags) -> BTreeMap<PathBuf, WatchFlags> {
        BTreeMap::from([(dir.to_path_buf(), flags)])
    }

    /// A temporary directory, watched for its contents; `None` (skipped)
    /// where it is not on a local file system.
    fn watched_tempdir() -> Option<(tempfile::TempDir, Watches)> {
        let dir = tempfile::tempdir().expect("tempdir");
        if !is_local(dir.path()) {
            eprintln!("SKIP: the temporary directory is not on a local file system");
            return None;
        }
        let mut w = Watches::default();
        assert_eq!(w.watch(one(dir.path(), contents())), Armed::Now);
        Some((dir, w))
    }

    #[test]
    fn a_set_is_armed_once_and_a_change_in_it_is_an_event() {
        let Some((dir, mut w)) = watched_tempdir() else {
            return;
        };
        assert_eq!(w.watch(one(dir.path(), contents())), Armed::Already);
        assert!(!w.drain(), "nothing happened yet");
        std::fs::write(dir.path().join("a.log"), b"x\n").expect("write");
        assert!(w.drain(), "a file created in a watched directory");
        assert!(!w.drain(), "drained");
        // Another set replaces the watches.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        w.drain();
        assert_eq!(w.watch(one(&sub, contents())), Armed::Now);
        std::fs::write(dir.path().join("b.log"), b"x\n").expect("write");
        assert!(!w.drain(), "the old directory is no longer watched");
        // A missing directory cannot be watched: not tried again while wanted.
        let gone = dir.path().join("gone");
        assert_eq!(w.watch(one(&gone, contents())), Armed::No);
        assert!(!w.is_watching());
        assert_eq!(w.watch(one(&gone, contents())), Armed::No);
        assert_eq!(
            w.watch(BTreeMap::new()),
            Armed::No,
            "nothing to watch: poll"
        );
    }

    #[test]
    fn the_nearest_existing_ancestor_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c.log");
        assert_eq!(existing_ancestor(&deep).as_deref(), Some(dir.path()));
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        assert_eq!(existing_ancestor(&deep), Some(dir.path().join("a/b")));
    }

    #[test]
    fn a_wait_ends_on_a_change_no_sooner_than_asked_or_when_woken() {
        let Some((dir, w)) = watched_tempdir() else {
            return;
        };
        let fd = std::sync::Arc::new(wake_fd().expect("eventfd"));
        let waiter = Waiter::new(std::sync::Arc::clone(&fd));
        // A change before the wait ends it at once, but not before `not_before`.
        std::fs::write(dir.path().join("a.log"), b"x\n").expect("write");
        let start = Instant::now();
        let not_before = start + Duration::from_millis(50);
        waiter.wait(Duration::from_secs(3600), Some(&w), not_before);
        assert!(Instant::now() >= not_before);
        // Woken: ends at once, even with an hour to wait.
        wake(&fd);
        waiter.wait(Duration::from_secs(3600), Some(&w), Instant::now());
        waiter.wait(Duration::from_secs(3600), None, Instant::now());
    }
}
