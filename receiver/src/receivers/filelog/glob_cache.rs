//! `include` globs expanded with the directory listings kept between polls:
//! a directory is listed again only when its modification time (or inode)
//! changed, so an idle poll costs one `statx` per directory the globs reach
//! (one for a glob whose fixed directory does not exist) instead of a
//! listing of each. The files found are still looked at every poll by the
//! caller (growth, rotation); only the directories' listings are kept.
//!
//! A directory's mtime changes when an entry is added, removed or renamed
//! in it, but with the kernel's coarse clock (a tick of 1-10 ms): an entry
//! added within the tick the directory was listed in leaves the mtime as it
//! was. A listing is therefore trusted only once the directory's mtime is
//! more than [`RACY_WINDOW`] older than the listing; until then it is
//! listed again each poll.
//!
//! Patterns this does not take apart (`**`, relative paths) are expanded
//! by the `glob` crate every poll, as before.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much older than its listing a directory's mtime must be for the
/// listing to be reused: far above the file system clock's granularity and
/// the lag of the coarse clock behind the system time.
const RACY_WINDOW: Duration = Duration::from_secs(1);
/// Directories whose listings are kept at most (each poll keeps only the
/// ones it reached).
const MAX_DIRS: usize = 100_000;

/// What is compared to decide whether a directory changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct Listing {
    stamp: Stamp,
    /// Whether the listing may be reused: the directory's mtime was more
    /// than [`RACY_WINDOW`] old when it was listed (else it is listed again
    /// next poll).
    settled: bool,
    /// Entry names, each with whether it is a directory (links followed).
    entries: Vec<(OsString, bool)>,
}

/// One component of a pattern: a name or a pattern over names.
#[derive(Debug)]
enum Part {
    Literal(OsString),
    Pattern(glob::Pattern),
}

/// A pattern taken apart: its fixed directory and the components after it.
#[derive(Debug)]
struct Split {
    base: PathBuf,
    parts: Vec<Part>,
}

/// Why a path could not be listed (for the caller's warn-once).
#[derive(Debug)]
pub struct ListError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// The listings kept between polls.
#[derive(Debug, Default)]
pub struct GlobCache {
    listings: HashMap<PathBuf, Listing>,
    /// Paths the last expansion looked for and did not find (or found not
    /// to be directories where it had to list them): where something may
    /// appear.
    missing: Vec<PathBuf>,
    /// The last expansion reached more directories than are kept.
    overflowed: bool,
    /// The patterns of the last expansion, taken apart (the same every
    /// poll: parsed once).
    splits: Vec<(String, Option<Split>)>,
    /// Directories listed (read) since the start: for tests.
    pub lists: u64,
}

fn is_pattern(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Takes `pattern` apart, or `None` when it is left to the `glob` crate.
fn split(pattern: &str) -> Option<Split> {
    if !pattern.starts_with('/') || pattern.contains("**") {
        return None;
    }
    let mut base = PathBuf::from("/");
    let mut parts = Vec::new();
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        if component == "." || component == ".." {
            return None;
        }
        if is_pattern(component) {
            parts.push(Part::Pattern(glob::Pattern::new(component).ok()?));
        } else if parts.is_empty() {
            base.push(component);
        } else {
            parts.push(Part::Literal(component.into()));
        }
    }
    Some(Split { base, parts })
}

impl GlobCache {
    /// Whether `pattern` is expanded here (else by the `glob` crate).
    pub fn handles(pattern: &str) -> bool {
        split(pattern).is_some()
    }

    /// Expands the patterns this cache handles (the others are skipped),
    /// pushing the matches `keep` takes to `out` (unsorted, possibly with
    /// duplicates across patterns) and what could not be listed to
    /// `errors`. `out` holds at most `max` paths.
    pub fn expand(
        &mut self,
        patterns: &[String],
        keep: impl Fn(&Path) -> bool,
        max: usize,
        out: &mut Vec<PathBuf>,
        errors: &mut Vec<ListError>,
    ) {
        let mut reached: HashMap<PathBuf, Listing> = HashMap::new();
        self.missing.clear();
        self.overflowed = false;
        let mut splits = std::mem::take(&mut self.splits);
        if splits.len() != patterns.len() || splits.iter().zip(patterns).any(|((p, _), q)| p != q) {
            splits = patterns.iter().map(|p| (p.clone(), split(p))).collect();
        }
        for (_, split) in &splits {
            let Some(split) = split else {
                continue;
            };
            if split.parts.is_empty() {
                // No pattern at all: the path, when it exists.
                if std::fs::metadata(&split.base).is_err() {
                    self.note_missing(split.base.clone());
                } else if out.len() < max && keep(&split.base) {
                    out.push(split.base.clone());
                }
                continue;
            }
            let mut dirs = vec![split.base.clone()];
            for (i, part) in split.parts.iter().enumerate() {
                let last = i + 1 == split.parts.len();
                let mut next = Vec::new();
                for dir in dirs {
                    match part {
                        Part::Literal(name) => {
                            let path = dir.join(name);
                            if last {
                                // As the `glob` crate: links followed.
                                if std::fs::metadata(&path).is_ok() {
                                    next.push(path);
                                } else {
                                    self.note_missing(path);
                                }
                            } else {
                                // Whether it is a directory shows when it is
                                // listed.
                                next.push(path);
                            }
                        }
                        Part::Pattern(p) => {
                            let Some(listing) = self.listing(&dir, &mut reached, errors) else {
                                continue;
                            };
                            for (name, is_dir) in &listing.entries {
                                if (last || *is_dir) && name.to_str().is_some_and(|n| p.matches(n))
                                {
                                    next.push(dir.join(name));
                                }
                            }
                        }
                    }
                    if out.len() + next.len() >= max {
                        break;
                    }
                }
                dirs = next;
            }
            out.extend(dirs.into_iter().filter(|p| keep(p)));
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        }
        // Only the directories reached this poll are kept.
        self.listings = reached;
        self.splits = splits;
    }

    /// The listing of `dir`, kept or read again; `None` when `dir` is not a
    /// directory that can be read.
    fn listing<'a>(
        &mut self,
        dir: &Path,
        reached: &'a mut HashMap<PathBuf, Listing>,
        errors: &mut Vec<ListError>,
    ) -> Option<&'a Listing> {
        if reached.contains_key(dir) {
            return reached.get(dir);
        }
        let meta = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                self.note_missing(dir.to_path_buf());
                return None;
            }
            Err(e) => {
                self.note_missing(dir.to_path_buf());
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(ListError {
                        path: dir.to_path_buf(),
                        error: e,
                    });
                }
                return None;
            }
        };
        let stamp = Stamp::of(&meta);
        let kept = self
            .listings
            .remove(dir)
            .filter(|l| l.settled && l.stamp == stamp);
        let listing = match kept {
            Some(l) => l,
            None => {
                let listed_at = SystemTime::now();
                let entries = match self.read(dir) {
                    Ok(e) => e,
                    Err(error) => {
                        errors.push(ListError {
                            path: dir.to_path_buf(),
                            error,
                        });
                        return None;
                    }
                };
                let settled = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.checked_add(RACY_WINDOW))
                    .is_some_and(|m| m < listed_at);
                Listing {
                    stamp,
                    settled,
                    entries,
                }
            }
        };
        if reached.len() >= MAX_DIRS {
            // Not kept: listed again next poll.
            reached.clear();
            self.overflowed = true;
        }
        Some(reached.entry(dir.to_path_buf()).or_insert(listing))
    }

    fn note_missing(&mut self, path: PathBuf) {
        // Bounded like the listings; past the bound the caller polls.
        if self.missing.len() <= MAX_DIRS {
            self.missing.push(path);
        }
    }

    /// Whether every listing kept may be reused (none is within
    /// [`RACY_WINDOW`] of its directory's last change): until then a
    /// change may be in a directory's listing but not in its mtime, and
    /// only the next poll sees it.
    pub fn settled(&self) -> bool {
        self.listings.values().all(|l| l.settled)
    }

    /// The directories the last expansion listed; `None` when it reached
    /// more than are kept.
    pub fn listed(&self) -> Option<impl Iterator<Item = &Path>> {
        (!self.overflowed).then(|| self.listings.keys().map(PathBuf::as_path))
    }

    /// What the last expansion looked for and did not find; `None` past
    /// the bound.
    pub fn missing(&self) -> Option<&[PathBuf]> {
        (self.missing.len() <= MAX_DIRS).then_some(self.missing.as_slice())
    }

    fn read(&mut self, dir: &Path) -> std::io::Result<Vec<(OsString, bool)>> {
        self.lists += 1;
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_symlink() => entry.path().is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => false,
            };
            entries.push((entry.file_name(), is_dir));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};

    /// Sets `dir`'s mtime an hour back: its listing can be trusted at once.
    fn age(dir: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(dir)
            .and_then(|f| f.set_modified(old))
            .expect("setting the directory's mtime");
    }

    fn expand(cache: &mut GlobCache, patterns: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        cache.expand(patterns, |_| true, 1000, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        out.sort();
        out
    }

    fn pattern(dir: &Path, rest: &str) -> String {
        format!("{}/{rest}", dir.display())
    }

    #[test]
    fn an_unchanged_directory_is_not_listed_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("a.log"), "x\n").expect("write");
        fs::write(tmp.path().join("b.txt"), "x\n").expect("write");
        age(tmp.path());
        let patterns = [pattern(tmp.path(), "*.log")];
        let mut cache = GlobCache::default();
        let first = expand(&mut cache, &patterns);
        assert_eq!(first, vec![tmp.path().join("a.log")]);
        assert_eq!(cache.lists, 1);
        // Growth of a file does not touch its directory.
        fs::write(tmp.path().join("a.log"), "x\ny\n").expect("write");
        for _ in 0..3 {
            assert_eq!(expand(&mut cache, &patterns), first);
        }
        assert_eq!(cache.lists, 1, "an unchanged directory was listed again");
    }

    #[test]
    fn a_new_file_is_found() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("a.log"), "x\n").expect("write");
        age(tmp.path());
        let patterns = [pattern(tmp.path(), "*.log")];
        let mut cache = GlobCache::default();
        assert_eq!(expand(&mut cache, &patterns).len(), 1);
        fs::write(tmp.path().join("b.log"), "x\n").expect("write");
        assert_eq!(
            expand(&mut cache, &patterns),
            vec![tmp.path().join("a.log"), tmp.path().join("b.log")]
        );
        fs::remove_file(tmp.path().join("a.log")).expect("remove");
        assert_eq!(
            expand(&mut cache, &patterns),
            vec![tmp.path().join("b.log")]
        );
    }

    #[test]
    fn a_recently_changed_directory_is_listed_each_poll() {
        // Its mtime (now) cannot show an entry added within the same clock
        // tick as the listing: the listing is not trusted yet.
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("a.log"), "x\n").expect("write");
        let patterns = [pattern(tmp.path(), "*.log")];
        let mut cache = GlobCache::default();
        expand(&mut cache, &patterns);
        expand(&mut cache, &patterns);
        assert_eq!(cache.lists, 2);
        // Once its mtime is old enough, the listing is kept.
        age(tmp.path());
        expand(&mut cache, &patterns);
        expand(&mut cache, &patterns);
        assert_eq!(cache.lists, 3);
    }

    #[test]
    fn nested_patterns_find_new_directories_and_skip_missing_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pods = tmp.path().join("pods");
        fs::create_dir_all(pods.join("ns_a/app")).expect("mkdir");
        fs::write(pods.join("ns_a/app/0.log"), "x\n").expect("write");
        for d in [pods.join("ns_a/app"), pods.join("ns_a"), pods.clone()] {
            age(&d);
        }
        let patterns = [
            pattern(&pods, "*/*/*.log"),
            pattern(tmp.path(), "missing/*/*.log"),
        ];
        let mut cache = GlobCache::default();
        assert_eq!(
            expand(&mut cache, &patterns),
            vec![pods.join("ns_a/app/0.log")]
        );
        assert_eq!(cache.lists, 3);
        expand(&mut cache, &patterns);
        assert_eq!(cache.lists, 3, "unchanged directories were listed again");
        fs::create_dir_all(pods.join("ns_b/db")).expect("mkdir");
        fs::write(pods.join("ns_b/db/0.log"), "x\n").expect("write");
        assert_eq!(
            expand(&mut cache, &patterns),
            vec![pods.join("ns_a/app/0.log"), pods.join("ns_b/db/0.log")]
        );
    }

    #[test]
    fn matches_what_the_glob_crate_finds() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        for d in ["a/x", "a/y", "b/x", ".hidden/x", "c"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for f in [
            "a/x/1.log",
            "a/x/2.txt",
            "a/y/1.log",
            "b/x/1.log",
            ".hidden/x/1.log",
            "c/syslog",
            "c/x-json.log",
        ] {
            fs::write(root.join(f), "x\n").expect("write");
        }
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).expect("symlink");
        for p in [
            "*/x/*.log",
            "*/*/*.log",
            "a/?/[12].log",
            "c/syslog",
            "c/none",
            "c/*-json.log",
            "*",
            "a/*",
        ] {
            let pattern = pattern(root, p);
            let mut want: Vec<PathBuf> = glob::glob(&pattern)
                .expect("pattern")
                .map(|e| e.expect("entry"))
                .collect();
            want.sort();
            let mut cache = GlobCache::default();
            assert_eq!(expand(&mut cache, &[pattern]), want, "{p}");
        }
        assert!(!GlobCache::handles("relative/*.log"));
        assert!(!GlobCache::handles("/var/log/**/*.log"));
    }
}
