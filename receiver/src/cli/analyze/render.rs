//! The human output of `oomscope analyze`: one block per kill, readable at a
//! glance, and the summary. Text from the input is made printable (a log
//! line can hold terminal escapes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::findings::{Finding, RuntimeMessage};
use crate::clock::local_utc_offset;
use crate::kernel_log::OomReport;

/// Largest tasks of the report's table shown.
pub const TASKS_SHOWN: usize = 5;
/// Keys the summary counts (cgroups, names); the rest is counted as others.
pub const MAX_SUMMARY_KEYS: usize = 10_000;
/// Largest consumers listed in the summary.
pub const LARGEST_SHOWN: usize = 10;
/// Bytes of a summary key (a cgroup path, a name) kept.
const MAX_KEY_BYTES: usize = 512;
/// Rows of each summary table.
const SUMMARY_ROWS: usize = 15;

/// ANSI colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    fn red(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    fn yellow(self, text: &str) -> String {
        self.paint("1;33", text)
    }
    fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    fn label(self, text: &str) -> String {
        self.paint("36", &format!("{text:<11}"))
    }
}

/// Control characters (terminal escapes) as `?`; tabs kept where `tabs`.
pub fn printable(text: &str, tabs: bool) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && !(tabs && c == '\t') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// `50.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn kb(kb: Option<u64>) -> Option<String> {
    kb.map(|kb| human_bytes(kb.saturating_mul(1024)))
}

/// `2024-03-02 03:04:05 +01:00`, in this host's zone.
pub fn local_time(unix_nanos: u64) -> String {
    let seconds = i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let offset = local_utc_offset(seconds);
    let Ok(utc) = time::OffsetDateTime::from_unix_timestamp(seconds) else {
        return format!("@{seconds}");
    };
    let Ok(zone) = time::UtcOffset::from_whole_seconds(offset) else {
        return format!("@{seconds}");
    };
    let t = utc.to_offset(zone);
    let (hours, minutes, _) = zone.as_hms();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        if offset < 0 { '-' } else { '+' },
        hours.unsigned_abs(),
        minutes.unsigned_abs()
    )
}

/// `[12345.678901]`, the kernel's own stamp (time since boot).
fn uptime(us: u64) -> String {
    format!("[{}.{:06}]", us / 1_000_000, us % 1_000_000)
}

/// The scope of a report: `cgroup limit`, `system-wide`, ...
fn scope(report: &OomReport) -> Option<String> {
    let constraint = report.constraint.as_deref();
    let what = if report.global_oom || constraint == Some("CONSTRAINT_NONE") {
        "system-wide"
    } else if constraint == Some("CONSTRAINT_MEMCG")
        || report.oom_memcg.is_some()
        || report.killed.reason.as_deref() == Some("Memory cgroup out of memory")
    {
        "cgroup limit"
    } else if constraint == Some("CONSTRAINT_CPUSET") {
        "cpuset"
    } else if constraint == Some("CONSTRAINT_MEMORY_POLICY") {
        "memory policy"
    } else if report.killed.reason.as_deref() == Some("Out of memory") {
        "system-wide"
    } else {
        return constraint.map(|c| printable(c, false));
    };
    Some(match constraint {
        Some(c) => format!("{what} ({})", printable(c, false)),
        None => what.to_owned(),
    })
}

/// The block of one finding.
pub fn finding_block(finding: &Finding, style: Style) -> String {
    let text = &finding.report;
    let report = &text.report;
    let mut out = String::new();
    let mut heading = Vec::new();
    if finding.is_kill() {
        heading.push(style.red("OOM kill"));
    } else {
        heading.push(style.yellow("WARN OOM report without a kill"));
    }
    if let Some(time) = text.time_unix_nano {
        heading.push(style.bold(&local_time(time)));
    }
    if let Some(us) = text.kernel_time_us {
        heading.push(uptime(us));
    }
    if let Some(host) = &text.host {
        heading.push(format!("host {}", style.bold(&printable(host, false))));
    }
    let _ = writeln!(out, "{}", heading.join("  "));
    let lines = if text.first_line == text.last_line {
        format!("line {}", text.first_line)
    } else {
        format!("lines {}-{}", text.first_line, text.last_line)
    };
    let _ = writeln!(
        out,
        "  {}{} {}",
        style.label("source"),
        printable(&finding.source.display, false),
        style.dim(&lines)
    );
    if let Some(unfinished) = &report.unfinished {
        let _ = writeln!(
            out,
            "  {}{}",
            style.label("note"),
            style.yellow(&unfinished.note())
        );
    } else {
        victim_lines(&mut out, report, style);
    }
    if let Some(selected) = &report.selected {
        if !finding.is_kill() || selected.pid != report.killed.pid {
            let score = selected
                .score
                .map(|s| format!(", score {s}"))
                .unwrap_or_default();
            let why = if finding.is_kill() {
                format!("; the kernel killed its child {}", report.killed.pid)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}pid {} {}{score}{why}",
                style.label("selected"),
                selected.pid,
                printable(&selected.comm, false)
            );
        }
    }
    let mut trigger = Vec::new();
    if let Some(comm) = &report.trigger_comm {
        trigger.push(printable(comm, false));
    }
    if let Some(pid) = report.trigger_pid {
        trigger.push(format!("(pid {pid})"));
    }
    if let Some(gfp) = &report.gfp_mask {
        trigger.push(format!("gfp_mask={}", printable(gfp, false)));
    }
    if let Some(order) = report.order {
        trigger.push(format!("order={order}"));
    }
    if !trigger.is_empty() {
        let _ = writeln!(out, "  {}{}", style.label("trigger"), trigger.join(" "));
    }
    if let Some(scope) = scope(report) {
        let _ = writeln!(out, "  {}{scope}", style.label("scope"));
    }
    let usage = match (report.memcg_usage_bytes, report.memcg_limit_bytes) {
        (Some(usage), Some(limit)) => Some(format!(
            "usage {} of limit {}",
            human_bytes(usage),
            human_bytes(limit)
        )),
        (Some(usage), None) => Some(format!("usage {}", human_bytes(usage))),
        (None, Some(limit)) => Some(format!("limit {}", human_bytes(limit))),
        (None, None) => None,
    };
    let failcnt = report
        .memcg_failcnt
        .map(|n| format!(", failcnt {n}"))
        .unwrap_or_default();
    match (&report.oom_memcg, usage) {
        (Some(memcg), usage) => {
            let usage = usage.map(|u| format!(": {u}{failcnt}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{}{usage}",
                style.label("cgroup"),
                style.bold(&printable(memcg, false))
            );
        }
        (None, Some(usage)) => {
            let _ = writeln!(out, "  {}{usage}{failcnt}", style.label("cgroup"));
        }
        (None, None) => {}
    }
    if let Some(task_memcg) = &report.task_memcg {
        if report.oom_memcg.as_ref() != Some(task_memcg) {
            let _ = writeln!(
                out,
                "  {}{}",
                style.label("victim cg"),
                printable(task_memcg, false)
            );
        }
    }
    if let Some(group) = &report.oom_group {
        let repeated = if report.repeated_victim {
            " (the kernel's second line for the group's victim)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {}{} (memory.oom.group member kill){repeated}",
            style.label("oom group"),
            printable(group, false)
        );
    }
    if !report.tasks.is_empty() {
        let _ = writeln!(
            out,
            "  {}largest by rss, {} of {}:",
            style.label("tasks"),
            report.tasks.len().min(TASKS_SHOWN),
            report.task_count
        );
        let _ = writeln!(
            out,
            "  {:11}{}",
            "",
            style.dim(&format!("{:>8}  {:>10}  name", "pid", "rss"))
        );
        for task in report.tasks.iter().take(TASKS_SHOWN) {
            let _ = writeln!(
                out,
                "  {:11}{:>8}  {:>10}  {}",
                "",
                task.pid,
                human_bytes(task.rss_bytes),
                printable(&task.name, false)
            );
        }
    }
    if let Some(reaped) = &finding.reaped {
        let mut parts = Vec::new();
        for (name, value) in [
            ("anon-rss", reaped.reaped.anon_rss_kb),
            ("file-rss", reaped.reaped.file_rss_kb),
            ("shmem-rss", reaped.reaped.shmem_rss_kb),
        ] {
            if let Some(value) = kb(value) {
                parts.push(format!("{name} {value}"));
            }
        }
        let _ = writeln!(
            out,
            "  {}memory freed, now {} {}",
            style.label("reaped"),
            parts.join(", "),
            style.dim(&format!("(line {})", reaped.line))
        );
    }
    for message in &finding.nearby {
        runtime_lines(&mut out, message, style);
    }
    out
}

fn victim_lines(out: &mut String, report: &OomReport, style: Style) {
    let killed = &report.killed;
    let mut sizes = Vec::new();
    for (name, value) in [
        ("anon-rss", killed.anon_rss_kb),
        ("file-rss", killed.file_rss_kb),
        ("shmem-rss", killed.shmem_rss_kb),
    ] {
        if let Some(value) = kb(value) {
            sizes.push(format!("{name} {value}"));
        }
    }
    let _ = writeln!(
        out,
        "  {}{}  {}",
        style.label("victim"),
        style.red(&format!(
            "pid {} {}",
            killed.pid,
            printable(&killed.comm, false)
        )),
        sizes.join("  ")
    );
    let mut more = Vec::new();
    if let Some(total_vm) = kb(killed.total_vm_kb) {
        more.push(format!("total-vm {total_vm}"));
    }
    if let Some(pgtables) = kb(killed.pgtables_kb) {
        more.push(format!("pgtables {pgtables}"));
    }
    if let Some(uid) = killed.uid {
        more.push(format!("uid {uid}"));
    }
    if let Some(adj) = killed.oom_score_adj {
        more.push(format!("oom_score_adj {adj}"));
    }
    if !more.is_empty() {
        let _ = writeln!(out, "  {:11}{}", "", style.dim(&more.join(", ")));
    }
}

fn runtime_lines(out: &mut String, message: &RuntimeMessage, style: Style) {
    let at = if message.first_line == message.last_line {
        format!("line {}", message.first_line)
    } else {
        format!("lines {}-{}", message.first_line, message.last_line)
    };
    let time = message
        .time_unix_nano
        .map(|t| format!(", {}", local_time(t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {}{} ({}) {}",
        style.label("nearby"),
        style.bold(&printable(&message.pattern, false)),
        printable(&message.runtime, false),
        style.dim(&format!("{at}{time}"))
    );
    for line in message.text.lines() {
        let _ = writeln!(out, "  {:11}| {}", "", printable(line, true));
    }
    let shown = message.text.lines().count();
    if message.total_lines > shown {
        let _ = writeln!(
            out,
            "  {:11}{}",
            "",
            style.dim(&format!("... {} more lines", message.total_lines - shown))
        );
    }
}

/// A victim for the summary's largest consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Consumer {
    anon_rss_kb: u64,
    pid: i32,
    comm: String,
    cgroup: Option<String>,
    place: String,
}

/// What the summary counts.
#[derive(Debug, Default)]
pub struct Summary {
    pub inputs_read: u64,
    pub inputs_skipped: u64,
    pub inputs_failed: u64,
    pub lines: u64,
    pub lines_cut: u64,
    pub bytes: u64,
    pub kills: u64,
    pub without_kill: u64,
    per_cgroup: BTreeMap<String, u64>,
    per_name: BTreeMap<String, u64>,
    other_cgroups: u64,
    other_names: u64,
    largest: Vec<Consumer>,
}

fn count(map: &mut BTreeMap<String, u64>, others: &mut u64, key: &str) {
    let mut end = key.len().min(MAX_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let key = &key[..end];
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_SUMMARY_KEYS {
        map.insert(key.to_owned(), 1);
    } else {
        *others += 1;
    }
}

impl Summary {
    pub fn add(&mut self, finding: &Finding) {
        if !finding.is_kill() {
            self.without_kill += 1;
            return;
        }
        self.kills += 1;
        let report = &finding.report.report;
        let cgroup = match (&report.oom_memcg, scope(report)) {
            (Some(memcg), _) => memcg.clone(),
            (None, Some(scope)) if scope.starts_with("system-wide") => "(system-wide)".to_owned(),
            _ => "(not stated)".to_owned(),
        };
        count(&mut self.per_cgroup, &mut self.other_cgroups, &cgroup);
        count(
            &mut self.per_name,
            &mut self.other_names,
            &report.killed.comm,
        );
        if let Some(anon_rss_kb) = report.killed.anon_rss_kb {
            self.largest.push(Consumer {
                anon_rss_kb,
                pid: report.killed.pid,
                comm: report.killed.comm.clone(),
                cgroup: report
                    .oom_memcg
                    .clone()
                    .or_else(|| report.task_memcg.clone()),
                place: format!("{}:{}", finding.source.display, finding.report.last_line),
            });
            self.largest
                .sort_by_key(|consumer| std::cmp::Reverse(consumer.anon_rss_kb));
            self.largest.truncate(LARGEST_SHOWN);
        }
    }

    /// The summary's text.
    pub fn render(&self, style: Style) -> String {
        let mut out = String::new();
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let _ = writeln!(
            out,
            "{} {}, {}",
            style.bold("Summary:"),
            plural(self.kills, "OOM kill", "OOM kills"),
            plural(
                self.without_kill,
                "report without a kill",
                "reports without a kill"
            )
        );
        let mut read = format!(
            "  read {} ({} lines, {})",
            plural(self.inputs_read, "input", "inputs"),
            self.lines,
            human_bytes(self.bytes)
        );
        if self.lines_cut > 0 {
            let _ = write!(
                read,
                "; {} cut at {}",
                plural(self.lines_cut, "line", "lines"),
                human_bytes(super::input::MAX_LINE_BYTES as u64)
            );
        }
        if self.inputs_skipped > 0 {
            let _ = write!(read, "; {} skipped", self.inputs_skipped);
        }
        if self.inputs_failed > 0 {
            let _ = write!(read, "; {} unreadable", self.inputs_failed);
        }
        let _ = writeln!(out, "{read}");
        if self.kills == 0 {
            return out;
        }
        table(
            &mut out,
            style,
            "kills per cgroup (whose limit was hit)",
            &self.per_cgroup,
            self.other_cgroups,
        );
        table(
            &mut out,
            style,
            "kills per victim name",
            &self.per_name,
            self.other_names,
        );
        if !self.largest.is_empty() {
            let _ = writeln!(out, "  {}", style.bold("largest victims by anon-rss"));
            for consumer in &self.largest {
                let cgroup = consumer
                    .cgroup
                    .as_deref()
                    .map(|c| format!("  {}", printable(c, false)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {:>10}  {} (pid {}){cgroup}  {}",
                    human_bytes(consumer.anon_rss_kb.saturating_mul(1024)),
                    printable(&consumer.comm, false),
                    consumer.pid,
                    style.dim(&printable(&consumer.place, false))
                );
            }
        }
        out
    }
}

fn table(out: &mut String, style: Style, title: &str, counts: &BTreeMap<String, u64>, others: u64) {
    let _ = writeln!(out, "  {}", style.bold(title));
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (key, n) in rows.iter().take(SUMMARY_ROWS) {
        let _ = writeln!(out, "    {n:>6}  {}", printable(key, false));
    }
    let rest: u64 = rows
        .iter()
        .skip(SUMMARY_ROWS)
        .map(|(_, n)| **n)
        .sum::<u64>()
        + others;
    if rest > 0 {
        let _ = writeln!(out, "    {rest:>6}  {}", style.dim("(others)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(50 * 1024 * 1024), "50.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn escapes_are_not_printed() {
        assert_eq!(printable("a\x1b[31mb\tc", false), "a?[31mb?c");
        assert_eq!(printable("a\tb\r", true), "a\tb?");
    }
}
