//! The kernel's OOM reports found in log text: `dmesg` (also `-T`), kern.log
//! and /var/log/messages, `journalctl -k`, an sosreport, a paste in a ticket.
//! Each line's prefix is taken off ([`super::text`]), rsyslog's `#012`
//! folding undone, and the kernel's messages fed to the same
//! [`OomReportAssembler`] the `/dev/kmsg` readers use, one per host (a file
//! collected from several hosts interleaves their reports). Every report
//! comes out once: completed by its "Killed process" line, or unfinished
//! (with a note) when another report starts, it grows too long, the victim
//! was already exiting, or the text ends ([`TextReports::finish`]).
//!
//! Bounded: at most [`MAX_HOSTS`] hosts (or fewer, see
//! [`TextReports::max_hosts`]) are tracked (the least recently seen is
//! forgotten, its report sent as it is), each keeps at most [`MAX_BODY_LINES`] lines /
//! [`MAX_BODY_BYTES`] bytes of the report being assembled, and the
//! assembler drops a report after [`super::oom_report::MAX_REPORT_RECORDS`]
//! lines.

use std::collections::{HashMap, VecDeque};

use super::oom_report::{parse_reaped, OomReport, OomReportAssembler, Reaped, Unfinished};
use super::text::{split_prefix, unfold_rsyslog, PrefixForm, TimeContext};

/// Most hosts whose reports are assembled at once.
pub const MAX_HOSTS: usize = 64;
/// Most lines of a report's text kept for its body.
pub const MAX_BODY_LINES: usize = super::oom_report::MAX_REPORT_RECORDS;
/// Most bytes of a report's text kept for its body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// One report assembled from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextReport {
    pub report: OomReport,
    /// The report's kernel messages, prefixes removed, one per line (the
    /// lines of other programs in between left out).
    pub body: String,
    /// The host the prefix named.
    pub host: Option<String>,
    /// When the report's last line was written, from its prefix (a prefix
    /// without zone is read in the [`TimeContext`]'s offset).
    pub time_unix_nano: Option<u64>,
    /// The kernel's own timestamp of that line (time since boot).
    pub kernel_time_us: Option<u64>,
    /// The input lines (1-based) the report spans.
    pub first_line: u64,
    pub last_line: u64,
}

/// What the text holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextEvent {
    /// A kill (or a report without one: `report.unfinished`); boxed, as
    /// reports are few and large.
    Report(Box<TextReport>),
    /// "oom_reaper: reaped process ...": a killed process's memory was freed.
    Reaped {
        reaped: Reaped,
        host: Option<String>,
        line: u64,
    },
}

#[derive(Debug)]
struct Host {
    assembler: OomReportAssembler,
    /// (sequence, input line, message) of the report being assembled.
    lines: VecDeque<(u64, u64, String)>,
    bytes: usize,
    last_seen: u64,
}

/// Feeds lines of text, gives [`TextEvent`]s.
#[derive(Debug)]
pub struct TextReports {
    ctx: TimeContext,
    page_size: Option<u64>,
    /// Boxed: a `Host` is a few KiB (reports inline), and a map's table
    /// holds room for more entries than it has (one file reader per file
    /// keeps one of these maps).
    hosts: HashMap<String, Box<Host>>,
    /// Kernel messages seen (the assembler's sequence numbers).
    seq: u64,
    /// Input lines seen.
    line: u64,
    /// Most hosts tracked at once.
    max_hosts: usize,
    /// A line that looks cut by wrapping, waiting for its rest.
    held: Option<Held>,
}

/// What a line's prefix said.
struct Meta<'a> {
    host: Option<&'a str>,
    kernel_time_us: Option<u64>,
    time_unix_nano: Option<u64>,
}

#[derive(Debug)]
struct Held {
    host: Option<String>,
    kernel_time_us: Option<u64>,
    time_unix_nano: Option<u64>,
    message: String,
}

/// Most bytes a wrapped line is joined up to.
const MAX_HELD_BYTES: usize = 4096;

/// A report line a mail client or terminal wrapped: the kernel never ends
/// one with a space or a comma.
fn looks_wrapped(message: &str) -> bool {
    message.ends_with([' ', ',']) && !message.trim().is_empty() && is_report_line(message)
}

/// The lines whose fields matter, so whose wrapping is undone.
fn is_report_line(message: &str) -> bool {
    let message = message.trim_start();
    message.contains(" invoked oom-killer: ")
        || message.contains("Killed process ")
        || message.contains("ill process ")
        || message.starts_with("oom-kill:")
        || message.starts_with("CPU: ")
        || message.starts_with("Task in ")
}

impl TextReports {
    /// Reports from text whose times without zone or year are read in `ctx`;
    /// task tables are converted with this host's page size.
    pub fn new(ctx: TimeContext) -> Self {
        TextReports {
            ctx,
            page_size: None,
            hosts: HashMap::new(),
            seq: 0,
            line: 0,
            max_hosts: MAX_HOSTS,
            held: None,
        }
    }

    /// Task tables converted with `page_size`-byte pages (the reporting
    /// host's, when it is not this one).
    pub fn with_page_size(ctx: TimeContext, page_size: u64) -> Self {
        TextReports {
            page_size: Some(page_size),
            ..Self::new(ctx)
        }
    }

    /// At most `max_hosts` hosts' reports assembled at once (at least one;
    /// [`MAX_HOSTS`] by default): a receiver tailing many files keeps less
    /// per file.
    pub fn max_hosts(mut self, max_hosts: usize) -> Self {
        self.max_hosts = max_hosts.clamp(1, MAX_HOSTS);
        self
    }

    /// The next line of text (without its newline). True when the line is
    /// part of a report (its text is in the report's body).
    pub fn push_line(&mut self, raw: &str, out: &mut Vec<TextEvent>) -> bool {
        self.line += 1;
        let line = split_prefix(raw, &self.ctx);
        if line.from_kernel() == Some(false) {
            return false;
        }
        let meta = Meta {
            host: line.host,
            kernel_time_us: line.kernel_time_us,
            time_unix_nano: line.time.as_ref().and_then(|t| t.unix_nanos(&self.ctx)),
        };
        if let Some(mut held) = self.held.take() {
            if line.form == PrefixForm::None && !line.message.trim().is_empty() {
                // The rest of a line a mail or a terminal wrapped.
                held.message.truncate(held.message.trim_end().len());
                held.message.push(' ');
                held.message.push_str(line.message.trim_start());
                if looks_wrapped(&held.message) && held.message.len() < MAX_HELD_BYTES {
                    self.held = Some(held);
                    return true;
                }
                return self.push_held(held, out);
            }
            self.push_held(held, out);
        }
        if line.form != PrefixForm::None && looks_wrapped(line.message) {
            self.held = Some(Held {
                host: line.host.map(str::to_owned),
                kernel_time_us: meta.kernel_time_us,
                time_unix_nano: meta.time_unix_nano,
                message: line.message.to_owned(),
            });
            return true;
        }
        let mut in_report = false;
        for message in unfold_rsyslog(line.message) {
            self.seq += 1;
            in_report |= self.push_message(&meta, message.trim(), out);
        }
        in_report
    }

    /// One kernel message that has no prefix to take off (a journal entry's
    /// `MESSAGE`, which carries its times in fields): `time_unix_nano` when
    /// it was logged, `kernel_time_us` the time since boot. True when the
    /// message is part of a report.
    pub fn push_kernel_message(
        &mut self,
        message: &str,
        time_unix_nano: Option<u64>,
        kernel_time_us: Option<u64>,
        out: &mut Vec<TextEvent>,
    ) -> bool {
        self.line += 1;
        self.seq += 1;
        let meta = Meta {
            host: None,
            kernel_time_us,
            time_unix_nano,
        };
        self.push_message(&meta, message.trim(), out)
    }

    fn push_held(&mut self, held: Held, out: &mut Vec<TextEvent>) -> bool {
        let meta = Meta {
            host: held.host.as_deref(),
            kernel_time_us: held.kernel_time_us,
            time_unix_nano: held.time_unix_nano,
        };
        self.seq += 1;
        self.push_message(&meta, held.message.trim(), out)
    }

    /// Whether a report is waiting for more lines (its "Killed process"
    /// line): every line matters until it comes.
    pub fn is_pending(&self) -> bool {
        self.hosts
            .values()
            .any(|host| host.assembler.pending_first_seq().is_some())
    }

    /// The text ended: reports still waiting for their "Killed process"
    /// line come out unfinished.
    pub fn finish(&mut self, out: &mut Vec<TextEvent>) {
        if let Some(held) = self.held.take() {
            self.push_held(held, out);
        }
        let mut hosts: Vec<(String, Box<Host>)> = self.hosts.drain().collect();
        hosts.sort_by_key(|(_, host)| host.last_seen);
        for (name, mut host) in hosts {
            host.assembler.finish();
            if let Some(report) = host.assembler.take_unfinished() {
                let host_name = (!name.is_empty()).then_some(name);
                out.push(TextEvent::Report(Box::new(Self::text_report(
                    &mut host, report, host_name, None, None,
                ))));
            }
        }
    }

    fn push_message(&mut self, line: &Meta<'_>, message: &str, out: &mut Vec<TextEvent>) -> bool {
        let name = line.host.unwrap_or_default();
        if !self.hosts.contains_key(name) && self.hosts.len() >= self.max_hosts {
            self.forget_oldest_host(out);
        }
        let page_size = self.page_size;
        let host = self.hosts.entry(name.to_owned()).or_insert_with(|| {
            Box::new(Host {
                assembler: page_size
                    .map_or_else(OomReportAssembler::new, OomReportAssembler::with_page_size)
                    .headerless_reports(),
                lines: VecDeque::new(),
                bytes: 0,
                last_seen: 0,
            })
        });
        host.last_seen = self.seq;
        let host_name = line.host.map(str::to_owned);
        let time = line.time_unix_nano;
        let completed =
            host.assembler
                .push_message(self.seq, line.kernel_time_us.unwrap_or(0), message);
        let mut ended_here = false;
        if let Some(unfinished) = host.assembler.take_unfinished() {
            // Ended by this line (a new header, the victim exiting) or
            // before it.
            let ends_here = unfinished.last_seq == self.seq;
            ended_here = ends_here;
            if ends_here {
                keep_line(host, self.seq, self.line, message);
            }
            let (time, kernel_time) = if ends_here {
                (time, line.kernel_time_us)
            } else {
                (None, None)
            };
            out.push(TextEvent::Report(Box::new(Self::text_report(
                host,
                unfinished,
                host_name.clone(),
                time,
                kernel_time,
            ))));
        }
        if let Some(report) = completed {
            keep_line(host, self.seq, self.line, message);
            out.push(TextEvent::Report(Box::new(Self::text_report(
                host,
                report,
                host_name,
                time,
                line.kernel_time_us,
            ))));
            true
        } else if let Some(first) = host.assembler.pending_first_seq() {
            if host.lines.front().is_some_and(|(seq, _, _)| *seq < first) {
                // A new report started: the old lines are not its.
                host.lines.retain(|(seq, _, _)| *seq >= first);
                host.bytes = host.lines.iter().map(|(_, _, l)| l.len() + 1).sum();
            }
            keep_line(host, self.seq, self.line, message);
            true
        } else {
            host.lines.clear();
            host.bytes = 0;
            if let Some(reaped) = parse_reaped(message) {
                out.push(TextEvent::Reaped {
                    reaped,
                    host: host_name,
                    line: self.line,
                });
            }
            ended_here
        }
    }

    /// A report with its body: the kept lines it spans.
    fn text_report(
        host: &mut Host,
        report: OomReport,
        host_name: Option<String>,
        time_unix_nano: Option<u64>,
        kernel_time_us: Option<u64>,
    ) -> TextReport {
        let range = report.first_seq..=report.last_seq;
        let mut body = String::new();
        let (mut first_line, mut last_line) = (None, 0);
        for (seq, line, message) in &host.lines {
            if range.contains(seq) {
                first_line.get_or_insert(*line);
                last_line = *line;
                if !body.is_empty() {
                    body.push('\n');
                }
                body.push_str(message);
            }
        }
        host.lines.retain(|(seq, _, _)| *seq > report.last_seq);
        host.bytes = host.lines.iter().map(|(_, _, l)| l.len() + 1).sum();
        TextReport {
            report,
            body,
            host: host_name,
            time_unix_nano,
            kernel_time_us,
            first_line: first_line.unwrap_or(last_line),
            last_line,
        }
    }

    fn forget_oldest_host(&mut self, out: &mut Vec<TextEvent>) {
        let Some(oldest) = self
            .hosts
            .iter()
            .min_by_key(|(_, host)| host.last_seen)
            .map(|(name, _)| name.clone())
        else {
            return;
        };
        if let Some(mut host) = self.hosts.remove(&oldest) {
            host.assembler.finish_because(Unfinished::TooManyHosts);
            if let Some(report) = host.assembler.take_unfinished() {
                let name = (!oldest.is_empty()).then_some(oldest);
                out.push(TextEvent::Report(Box::new(Self::text_report(
                    &mut host, report, name, None, None,
                ))));
            }
        }
    }
}

fn keep_line(host: &mut Host, seq: u64, line: u64, message: &str) {
    if host.lines.len() < MAX_BODY_LINES && host.bytes + message.len() < MAX_BODY_BYTES {
        host.bytes += message.len() + 1;
        host.lines.push_back((seq, line, message.to_owned()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::*;

    const PAGE: u64 = 4096;

    fn samples_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/oom-reports")
    }

    fn events(text: &str) -> Vec<TextEvent> {
        let mut reports = TextReports::with_page_size(TimeContext::utc(2024), PAGE);
        let mut out = Vec::new();
        for line in text.lines() {
            reports.push_line(line, &mut out);
        }
        reports.finish(&mut out);
        out
    }

    fn kills(events: &[TextEvent]) -> Vec<&TextReport> {
        events
            .iter()
            .filter_map(|e| match e {
                TextEvent::Report(r) if r.report.unfinished.is_none() => Some(&**r),
                _ => None,
            })
            .collect()
    }

    /// `expected[key]` (when the sample states it) equals `got`.
    fn check<T: PartialEq + std::fmt::Debug>(
        errors: &mut Vec<String>,
        what: &str,
        expected: &Value,
        key: &str,
        got: Option<T>,
        read: impl Fn(&Value) -> Option<T>,
    ) {
        let want = &expected[key];
        if want.is_null() {
            return;
        }
        let want = read(want);
        if want != got {
            errors.push(format!("{what}: {key}: expected {want:?}, got {got:?}"));
        }
    }

    /// One real kill on this project's test machine as every tool printed
    /// it (tests/data/log-prefixes/README.md: dmesg in every time format,
    /// /dev/kmsg, journalctl's short formats, rsyslog's three file
    /// formats): the same one kill with the same facts from each.
    #[test]
    fn a_kill_on_this_machine_reads_the_same_from_every_tool() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/log-prefixes");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        assert!(files.len() >= 20, "{files:?}");
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            let events = events(&text);
            let got = kills(&events);
            assert_eq!(got.len(), 1, "{name}: {events:#?}");
            let k = got[0];
            let r = &k.report;
            assert_eq!(
                (r.killed.pid, r.killed.comm.as_str(), r.killed.anon_rss_kb),
                (28526, "python3", Some(50944)),
                "{name}"
            );
            assert_eq!(r.trigger_pid, Some(28526), "{name}");
            assert_eq!(
                r.oom_memcg.as_deref(),
                Some("/oomscope-fleet/node-16/kill-2"),
                "{name}"
            );
            assert_eq!(r.memcg_limit_bytes, Some(51200 * 1024), "{name}");
            assert_eq!(r.task_count, 1, "{name}");
            assert_eq!(r.constraint.as_deref(), Some("CONSTRAINT_MEMCG"), "{name}");
            assert!(
                k.body.starts_with("python3 invoked oom-killer: "),
                "{name}: {}",
                k.body
            );
            assert!(k.body.ends_with("oom_score_adj:0"), "{name}");
            if name.starts_with("journal") || name.starts_with("rsyslog") {
                assert_eq!(k.host.as_deref(), Some("vm"), "{name}");
            }
            // Only Java's lines follow the report in the rsyslog files.
            assert!(
                events
                    .iter()
                    .all(|e| !matches!(e, TextEvent::Report(r) if r.report.unfinished.is_some())),
                "{name}: {events:#?}"
            );
        }
    }

    /// Two hosts' reports interleaved line by line in one file (a central
    /// syslog): each assembled apart, with its own facts.
    #[test]
    fn interleaved_hosts_are_assembled_apart() {
        let dir = samples_dir().join("new");
        let text = std::fs::read_to_string(dir.join("aks-syslog-kubepods-cgroupv2-stress-ng.txt"))
            .unwrap();
        let host = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap()
            .to_owned();
        let other: Vec<String> = text
            .lines()
            .map(|l| {
                l.replacen(&host, "other-node", 1)
                    .replace("stress-ng", "stress-ng2")
            })
            .collect();
        let mut mixed = String::new();
        for (a, b) in text.lines().zip(&other) {
            mixed.push_str(a);
            mixed.push('\n');
            mixed.push_str(b);
            mixed.push('\n');
        }
        let alone = events(&text);
        let events = events(&mixed);
        let got = kills(&events);
        assert_eq!(got.len(), 2 * kills(&alone).len(), "{got:#?}");
        for k in got {
            let r = &k.report;
            let (want_host, want_comm) = if k.host.as_deref() == Some("other-node") {
                ("other-node", "stress-ng2")
            } else {
                (host.as_str(), "stress-ng")
            };
            assert_eq!(k.host.as_deref(), Some(want_host));
            assert!(r.killed.comm.starts_with(want_comm), "{r:#?}");
            let alone = &kills(&alone)[0].report;
            assert_eq!(r.task_count, alone.task_count);
            assert_eq!(r.memcg_usage_bytes, alone.memcg_usage_bytes);
        }
    }

    /// Another CPU's kernel lines (an allocation failure warning with its
    /// own header, trace and Mem-Info, and driver chatter) interleaved
    /// with every line of a real report (this machine's, as `dmesg` printed
    /// it): the same report with the same facts.
    #[test]
    fn another_cpus_lines_interleaved_leave_the_report_whole() {
        let text = include_str!("../../../tests/data/log-prefixes/dmesg.txt");
        let other_cpu = [
            "kworker/1:1: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0",
            "CPU: 1 UID: 0 PID: 77 Comm: kworker/1:1 Not tainted 6.18.44-fc-v1252 #1 PREEMPT(none)",
            "Call Trace:",
            " <TASK>",
            " warn_alloc+0x13e/0x160",
            " </TASK>",
            "Mem-Info:",
            "active_anon:5 inactive_anon:12711 isolated_anon:0",
            "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
        ];
        let mut mixed = String::new();
        for (i, line) in text.lines().enumerate() {
            mixed.push_str(line);
            mixed.push('\n');
            let stamp = line.split(']').next().unwrap_or("[ 0.0");
            mixed.push_str(&format!("{stamp}] {}\n", other_cpu[i % other_cpu.len()]));
        }
        let (alone, mixed_events) = (events(text), events(&mixed));
        let (alone, got) = (kills(&alone), kills(&mixed_events));
        assert_eq!((alone.len(), got.len()), (1, 1), "{mixed_events:#?}");
        let (a, b) = (&alone[0].report, &got[0].report);
        assert_eq!(b.killed, a.killed);
        assert_eq!(b.selected, a.selected);
        assert_eq!(
            (&b.trigger_comm, b.trigger_pid, &b.gfp_mask, b.order),
            (&a.trigger_comm, a.trigger_pid, &a.gfp_mask, a.order)
        );
        assert_eq!(
            (&b.constraint, &b.oom_memcg, &b.task_memcg),
            (&a.constraint, &a.oom_memcg, &a.task_memcg)
        );
        assert_eq!(
            (b.memcg_usage_bytes, b.memcg_limit_bytes, b.task_count),
            (a.memcg_usage_bytes, a.memcg_limit_bytes, a.task_count)
        );
        assert_eq!(b.tasks, a.tasks);
        // The body keeps every line of the report (without a caller id the
        // other CPU's kernel lines cannot be told from the report's, so
        // they stay in it too, as they do from /dev/kmsg).
        let mut body = got[0].body.lines();
        for line in alone[0].body.lines() {
            assert!(body.any(|l| l == line), "{line} missing or out of order");
        }
    }

    /// The second report of a real ARM NAS (tests/data/oom-reports/new,
    /// nfsd-6.8-arm-back-to-back-no-killable) ends with "Out of memory and
    /// no killable processes": a report without a kill, saying so.
    #[test]
    fn no_killable_processes_is_a_report_without_a_kill() {
        let text = std::fs::read_to_string(
            samples_dir().join("new/nfsd-6.8-arm-back-to-back-no-killable.txt"),
        )
        .unwrap();
        let events = events(&text);
        let unfinished: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                TextEvent::Report(r) => r.report.unfinished.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            unfinished,
            [super::super::oom_report::Unfinished::NoKillableProcesses]
        );
    }

    /// Past the host bound, the least recently seen host's report is sent
    /// as it is (bounded memory), and the newcomer's assembled.
    #[test]
    fn the_host_bound_sends_the_oldest_report_as_it_is() {
        let mut reports = TextReports::with_page_size(TimeContext::utc(2024), PAGE).max_hosts(1);
        let mut out = Vec::new();
        for line in [
            "Mar  2 03:04:05 a kernel: x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Mar  2 03:04:05 b kernel: y invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Mar  2 03:04:05 b kernel: Out of memory: Killed process 5 (y) total-vm:8kB, anon-rss:4kB, file-rss:0kB",
        ] {
            reports.push_line(line, &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                TextEvent::Report(r) => Some((
                    r.host.as_deref(),
                    r.report.unfinished.clone(),
                    r.report.killed.pid,
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some("a"), Some(Unfinished::TooManyHosts), 0),
                (Some("b"), None, 5),
            ]
        );
    }

    /// Truncated, garbage and over-long input: what is known still comes
    /// out (with a note), bounded, without panicking.
    #[test]
    fn bad_text_gives_what_is_known() {
        let mut text = String::from("\u{0}\u{1}garbage \u{fffd}\u{fffd}\n");
        text.push_str("[  1.000000] x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n");
        text.push_str("[  1.000001] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n");
        for pid in 0..10_000 {
            text.push_str(&format!("[  1.000002] [ {pid:6}]     0 {pid:6}     100     {pid}    4096        0             0 t{pid}\n"));
        }
        text.push_str(&"A".repeat(10 << 20));
        text.push('\n');
        let events = events(&text);
        let reports: Vec<&TextReport> = events
            .iter()
            .filter_map(|e| match e {
                TextEvent::Report(r) => Some(&**r),
                _ => None,
            })
            .collect();
        assert_eq!(reports.len(), 1, "one unfinished report");
        let r = reports[0];
        assert_eq!(
            r.report.unfinished,
            Some(super::super::oom_report::Unfinished::TooLong)
        );
        assert_eq!(r.report.trigger_comm.as_deref(), Some("x"));
        assert!(r.report.tasks.len() <= super::super::oom_report::MAX_TASKS);
        // The header, the table's title and rows up to the bound.
        let last_row = super::super::oom_report::MAX_REPORT_RECORDS as i32 - 3;
        assert_eq!(
            r.report.tasks[0].pid, last_row,
            "the largest kept before the bound"
        );
        assert!(r.body.len() <= MAX_BODY_BYTES);
    }

    /// Every real report collected from public sources (see each
    /// directory's samples.json for the source of each file) gives one
    /// record per "Killed process" line, with every fact its text states.
    #[test]
    fn real_reports_from_public_sources_give_every_stated_fact() {
        let mut errors = Vec::new();
        let mut checked_kills = 0;
        let mut samples = 0;
        for dir in ["old", "new"] {
            let dir = samples_dir().join(dir);
            let manifest: Value =
                serde_json::from_slice(&std::fs::read(dir.join("samples.json")).unwrap()).unwrap();
            for sample in manifest["samples"].as_array().unwrap() {
                samples += 1;
                let file = sample["file"].as_str().unwrap();
                let text =
                    String::from_utf8_lossy(&std::fs::read(dir.join(file)).unwrap()).into_owned();
                let events = events(&text);
                let got = kills(&events);
                let want = sample["kills"].as_array().unwrap();
                if got.len() != want.len() {
                    errors.push(format!(
                        "{file}: {} kills, expected {}: {:#?}",
                        got.len(),
                        want.len(),
                        got.iter()
                            .map(|k| (k.report.killed.pid, &k.report.killed.comm))
                            .collect::<Vec<_>>()
                    ));
                    continue;
                }
                for (i, (k, w)) in got.iter().zip(want).enumerate() {
                    checked_kills += 1;
                    let what = format!("{file} kill {i}");
                    let r = &k.report;
                    let e = &mut errors;
                    let int = |v: &Value| v.as_i64();
                    let uint = |v: &Value| v.as_u64();
                    let text = |v: &Value| v.as_str().map(str::to_owned);
                    check(
                        e,
                        &what,
                        w,
                        "victim_pid",
                        Some(i64::from(r.killed.pid)),
                        int,
                    );
                    check(
                        e,
                        &what,
                        w,
                        "victim_comm",
                        Some(r.killed.comm.clone()),
                        text,
                    );
                    check(e, &what, w, "total_vm_kb", r.killed.total_vm_kb, uint);
                    check(e, &what, w, "anon_rss_kb", r.killed.anon_rss_kb, uint);
                    check(e, &what, w, "file_rss_kb", r.killed.file_rss_kb, uint);
                    check(e, &what, w, "shmem_rss_kb", r.killed.shmem_rss_kb, uint);
                    check(e, &what, w, "uid", r.killed.uid.map(u64::from), uint);
                    check(e, &what, w, "pgtables_kb", r.killed.pgtables_kb, uint);
                    check(
                        e,
                        &what,
                        w,
                        "oom_score_adj",
                        r.killed.oom_score_adj.map(i64::from),
                        int,
                    );
                    check(e, &what, w, "reason", r.killed.reason.clone(), text);
                    let selected = r.selected.as_ref();
                    check(
                        e,
                        &what,
                        w,
                        "selected_pid",
                        selected.map(|s| i64::from(s.pid)),
                        int,
                    );
                    check(
                        e,
                        &what,
                        w,
                        "selected_comm",
                        selected.map(|s| s.comm.clone()),
                        text,
                    );
                    check(e, &what, w, "score", selected.and_then(|s| s.score), uint);
                    check(e, &what, w, "trigger_comm", r.trigger_comm.clone(), text);
                    check(
                        e,
                        &what,
                        w,
                        "trigger_pid",
                        r.trigger_pid.map(i64::from),
                        int,
                    );
                    // The sample lists the mask, the report keeps the flags too.
                    check(
                        e,
                        &what,
                        w,
                        "gfp_mask",
                        r.gfp_mask
                            .as_deref()
                            .map(|m| m.split('(').next().unwrap_or(m).to_owned()),
                        text,
                    );
                    check(e, &what, w, "order", r.order.map(i64::from), int);
                    check(e, &what, w, "constraint", r.constraint.clone(), text);
                    check(e, &what, w, "oom_memcg", r.oom_memcg.clone(), text);
                    check(e, &what, w, "task_memcg", r.task_memcg.clone(), text);
                    check(
                        e,
                        &what,
                        w,
                        "memcg_usage_kb",
                        r.memcg_usage_bytes.map(|b| b / 1024),
                        uint,
                    );
                    check(
                        e,
                        &what,
                        w,
                        "memcg_limit_kb",
                        r.memcg_limit_bytes.map(|b| b / 1024),
                        uint,
                    );
                    check(
                        e,
                        &what,
                        w,
                        "task_table_rows",
                        Some(r.task_count as u64),
                        uint,
                    );
                    if !w["largest_task"].is_null() {
                        let largest = r
                            .tasks
                            .first()
                            .map(|t| (i64::from(t.pid), t.name.clone(), t.rss_bytes / PAGE));
                        let want = (
                            w["largest_task"]["pid"].as_i64().unwrap(),
                            w["largest_task"]["name"].as_str().unwrap().to_owned(),
                            w["largest_task"]["rss_pages"].as_u64().unwrap(),
                        );
                        if largest.as_ref() != Some(&want) {
                            errors.push(format!(
                                "{what}: largest_task: expected {want:?}, got {largest:?}"
                            ));
                        }
                    }
                    if !w["reaped"].is_null() {
                        let pid = w["reaped"]["pid"].as_i64().unwrap();
                        let found = events.iter().find_map(|ev| match ev {
                            TextEvent::Reaped { reaped, .. } if i64::from(reaped.pid) == pid => {
                                Some(reaped)
                            }
                            _ => None,
                        });
                        let want_anon = w["reaped"]["anon_rss_kb"].as_u64();
                        match found {
                            Some(reaped) if want_anon.is_none() || reaped.anon_rss_kb == want_anon => {}
                            other => errors.push(format!(
                                "{what}: reaped {pid}: expected anon-rss {want_anon:?}, got {other:?}"
                            )),
                        }
                    }
                }
            }
        }
        assert!(samples >= 20, "{samples} samples");
        assert!(
            errors.is_empty(),
            "{} of the facts of {checked_kills} kills differ:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
}
