//! Stack traces spread over several entries, grouped into one record.
//!
//! A program whose stdout or stderr goes to the journal writes each line of
//! a stack trace as an entry of its own (same unit, same pid, interleaved
//! with other programs' entries). Entries are grouped per (unit, or syslog
//! identifier when there is no unit; pid) by `filelog`'s assembler: a line
//! the pattern library says a trace follows (or Python's traceback header)
//! opens a group, the trace's lines join it, and the first line of the same
//! process that does not continue it (or `force_flush_period`) closes it.
//! Entries of other processes neither join nor close it. A multi-line
//! message (a trace sent as one entry) goes through the same assembler line
//! by line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::records::EntryFacts;
use crate::patterns::Library;
use crate::receivers::filelog::multiline::{Assembled, Assembler};
use crate::receivers::filelog::reader::Line;

/// Unit (or syslog identifier) and pid of an entry.
pub type GroupKey = (String, i64);

/// Groups open at once at most; beyond, the oldest is sent as it is.
pub const MAX_GROUPS: usize = 256;

/// The entry a record starts with.
#[derive(Debug)]
pub struct Start {
    /// Its position in this run's reading.
    pub pos: u64,
    pub facts: EntryFacts,
    /// Its cursor, where a restart reads again while the group is open.
    pub cursor: Option<String>,
    /// The resource of its records (from `facts`).
    pub resource: Vec<KeyValue>,
}

/// A record and the entry it started with.
#[derive(Debug)]
pub struct Output {
    pub assembled: Assembled,
    pub start: Arc<Start>,
}

struct Held {
    assembler: Assembler,
    start: Arc<Start>,
}

pub struct Groups {
    held: HashMap<GroupKey, Held>,
    max_size: usize,
    include_all: bool,
}

impl Groups {
    pub fn new(max_size: usize, include_all: bool) -> Groups {
        Groups {
            held: HashMap::new(),
            max_size,
            include_all,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether a group of process `pid` is open (a cheap test before the
    /// entry's unit is read).
    pub fn holds_pid(&self, pid: i64) -> bool {
        self.held.keys().any(|(_, p)| *p == pid)
    }

    pub fn holds(&self, key: &GroupKey) -> bool {
        self.held.contains_key(key)
    }

    /// The entry the oldest open group started with.
    pub fn oldest(&self) -> Option<&Arc<Start>> {
        self.held.values().map(|h| &h.start).min_by_key(|s| s.pos)
    }

    /// The lines of the entry at `pos`; `start` gives its facts (read only
    /// when a record needs them). Records are appended to `out`: matched
    /// ones, and with `include_all` the others too (the unmatched lines of
    /// one entry as one record).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        library: &Library,
        key: GroupKey,
        text: &str,
        truncated: bool,
        pos: u64,
        start: &mut dyn FnMut() -> Arc<Start>,
        out: &mut Vec<Output>,
    ) {
        let (mut assembler, held_start) = match self.held.remove(&key) {
            Some(held) => (held.assembler, Some(held.start)),
            None => (Assembler::new(None, self.max_size), None),
        };
        let mut assembled = Vec::new();
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            assembler.push(
                library,
                Line {
                    text: line.to_owned(),
                    end_offset: pos,
                    truncated: truncated && last,
                    ..Line::default()
                },
                &mut assembled,
            );
        }
        let mut unmatched: Option<Assembled> = None;
        for a in assembled {
            let of_this_entry = a.first_end_offset == pos;
            if a.matched.is_none() {
                if !self.include_all {
                    continue;
                }
                if of_this_entry {
                    // This entry's unmatched lines: one record.
                    match &mut unmatched {
                        Some(u) => {
                            u.text.push('\n');
                            u.text.push_str(&a.text);
                            u.truncated |= a.truncated;
                        }
                        None => unmatched = Some(a),
                    }
                    continue;
                }
            }
            if let Some(u) = unmatched.take() {
                out.push(Output {
                    assembled: u,
                    start: start(),
                });
            }
            let owner = match &held_start {
                Some(s) if !of_this_entry => Arc::clone(s),
                _ => start(),
            };
            out.push(Output {
                assembled: a,
                start: owner,
            });
        }
        if let Some(u) = unmatched {
            out.push(Output {
                assembled: u,
                start: start(),
            });
        }
        if let Some(first) = assembler.held_first_end_offset() {
            let owner = match held_start {
                Some(s) if first != pos => s,
                _ => start(),
            };
            if self.held.len() >= MAX_GROUPS {
                self.flush_oldest(out);
            }
            self.held.insert(
                key,
                Held {
                    assembler,
                    start: owner,
                },
            );
        }
    }

    fn flush_oldest(&mut self, out: &mut Vec<Output>) {
        let oldest = self
            .held
            .iter()
            .min_by_key(|(_, h)| h.start.pos)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            if let Some(held) = self.held.remove(&key) {
                Self::drain(held, out, self.include_all);
            }
        }
    }

    fn drain(mut held: Held, out: &mut Vec<Output>, include_all: bool) {
        let mut assembled = Vec::new();
        held.assembler.flush(&mut assembled);
        for a in assembled {
            if a.matched.is_some() || include_all {
                out.push(Output {
                    assembled: a,
                    start: Arc::clone(&held.start),
                });
            }
        }
    }

    /// Sends the groups open for `period` or longer, oldest first.
    pub fn flush_due(&mut self, period: Duration, out: &mut Vec<Output>) {
        let mut keys: Vec<(u64, GroupKey)> = self
            .held
            .iter()
            .map(|(k, h)| (h.start.pos, k.clone()))
            .collect();
        keys.sort_unstable();
        for (_, key) in keys {
            let Some(held) = self.held.get_mut(&key) else {
                continue;
            };
            let mut assembled = Vec::new();
            held.assembler.flush_due(period, &mut assembled);
            for a in assembled {
                if a.matched.is_some() || self.include_all {
                    out.push(Output {
                        assembled: a,
                        start: Arc::clone(&held.start),
                    });
                }
            }
            if !held.assembler.is_holding() {
                self.held.remove(&key);
            }
        }
    }

    /// Sends every open group.
    pub fn flush_all(&mut self, out: &mut Vec<Output>) {
        let mut held: Vec<Held> = self.held.drain().map(|(_, h)| h).collect();
        held.sort_by_key(|h| h.start.pos);
        for h in held {
            Self::drain(h, out, self.include_all);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn start(pos: u64) -> Arc<Start> {
        Arc::new(Start {
            pos,
            facts: EntryFacts::default(),
            cursor: None,
            resource: Vec::new(),
        })
    }

    fn push(groups: &mut Groups, key: (&str, i64), text: &str, pos: u64, out: &mut Vec<Output>) {
        let lib = Library::builtin();
        let mut cached: Option<Arc<Start>> = None;
        let mut make = || Arc::clone(cached.get_or_insert_with(|| start(pos)));
        groups.push(
            &lib,
            (key.0.to_owned(), key.1),
            text,
            false,
            pos,
            &mut make,
            out,
        );
    }

    #[test]
    fn a_trace_over_entries_is_one_record_amid_other_processes() {
        let mut g = Groups::new(10_000, false);
        let mut out = Vec::new();
        push(
            &mut g,
            ("a.service", 1),
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
            1,
            &mut out,
        );
        push(&mut g, ("b.service", 2), "unrelated", 2, &mut out);
        push(
            &mut g,
            ("a.service", 1),
            "\tat java.util.Arrays.copyOf(Arrays.java:3332)",
            3,
            &mut out,
        );
        assert!(out.is_empty());
        assert!(g.holds_pid(1));
        assert_eq!(g.oldest().map(|s| s.pos), Some(1));
        push(
            &mut g,
            ("a.service", 1),
            "\tat Main.main(Main.java:5)",
            4,
            &mut out,
        );
        push(&mut g, ("a.service", 1), "done", 5, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].start.pos, 1);
        assert_eq!(out[0].assembled.text.lines().count(), 3);
        assert!(g.is_empty());
    }

    #[test]
    fn a_multi_line_entry_is_split_and_grouped() {
        let mut g = Groups::new(10_000, false);
        let mut out = Vec::new();
        push(
            &mut g,
            ("a.service", 1),
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nMemoryError",
            7,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start.pos, 7);
        assert_eq!(
            out[0]
                .assembled
                .matched
                .as_ref()
                .map(|m| m.pattern.as_str()),
            Some("python.memory_error")
        );
        assert!(g.is_empty());
    }

    #[test]
    fn include_all_keeps_an_unmatched_entry_whole() {
        let mut g = Groups::new(10_000, true);
        let mut out = Vec::new();
        push(&mut g, ("a.service", 1), "one\ntwo", 1, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].assembled.text, "one\ntwo");
    }

    #[test]
    fn open_groups_are_bounded_and_flushed() {
        let mut g = Groups::new(10_000, false);
        let mut out = Vec::new();
        for pid in 0..(MAX_GROUPS as i64 + 1) {
            push(
                &mut g,
                ("a.service", pid),
                "java.lang.OutOfMemoryError: Java heap space",
                pid as u64 + 1,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start.pos, 1, "the oldest went first");
        g.flush_all(&mut out);
        assert_eq!(out.len(), MAX_GROUPS + 1);
    }
}
