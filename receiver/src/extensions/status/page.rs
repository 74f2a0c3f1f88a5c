//! The status page: one self-contained HTML document (inline CSS, inline
//! SVG charts drawn here, a few lines of inline script that refresh it),
//! complete without script.
//!
//! It draws the `oomscope.v1` messages of [`Status`] as they are: an empty
//! string or a zero the `.proto` calls unknown is shown as unknown.
//!
//! Every string from outside (cgroup paths, process names, command lines,
//! runtime messages) goes through [`esc`]: HTML's special characters become
//! entities, and control characters (terminal escapes) and bidirectional
//! overrides are shown as `\xNN` / `\u{NNNN}` instead of being passed on.
//! The page shows at most [`MAX_TEXT`] bytes of each (the JSON has it
//! whole).

use std::fmt::Write as _;

use super::model::Status;
use crate::api::v1;

/// Bytes shown of any one string from outside (a cgroup path, a command
/// line); runtime messages are shown by lines, below.
pub const MAX_TEXT: usize = 1024;

/// Lines of a runtime message shown on the page, and bytes of each (the
/// JSON has its whole text).
pub const MESSAGE_LINES: usize = 12;
pub const MESSAGE_LINE_BYTES: usize = 256;

/// The page's style sheet (its hash is in the Content-Security-Policy).
pub const STYLE: &str = "\
:root{--fg:#1b1f24;--mut:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0;--bad:#cf222e;--warn:#9a6700;--ok:#1a7f37;--a:#0969da;--b:#8250df}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--mut:#9198a1;--bg:#0d1117;--card:#151b23;--line:#3d444d;--bad:#f85149;--warn:#d29922;--ok:#3fb950;--a:#4493f8;--b:#ab7df8}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:12px 16px 32px}
header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap;border-bottom:1px solid var(--line);padding-bottom:6px}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:18px 0 6px}h3{font-size:14px;margin:8px 0 4px}
.mut{color:var(--mut)}.bad{color:var(--bad)}.warn{color:var(--warn)}.ok{color:var(--ok)}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:140px}
.card b{display:block;font-size:18px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px}
figcaption{font-size:12px;color:var(--mut)}
svg text{font-size:10px;fill:var(--mut)}
svg .frame{fill:none;stroke:var(--line)}
svg .s0{fill:none;stroke:var(--a);stroke-width:1.5}
svg .s1{fill:none;stroke:var(--b);stroke-width:1.5}
svg .limit{stroke:var(--bad);stroke-dasharray:4 3}
svg .kill{stroke:var(--bad)}
.key0{color:var(--a)}.key1{color:var(--b)}.keyl{color:var(--bad)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top}
td.n,th.n{text-align:right;white-space:nowrap}
.path{word-break:break-all}
article.incident{border:1px solid var(--line);border-left:4px solid var(--bad);border-radius:6px;padding:8px 12px;margin:10px 0;background:var(--card)}
article.incident .head{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:baseline}
.id{font-family:ui-monospace,monospace;font-size:12px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
@media (max-width:900px){.grid{grid-template-columns:minmax(0,1fr)}}
dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 10px;margin:4px 0}
dt{color:var(--mut)}dd{margin:0;word-break:break-all}
pre{background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:6px;margin:4px 0;overflow-x:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
meter{width:90px}
";

/// The page's script: reloads the page's data every 5 s (while visible)
/// and swaps it in, keeping open details open. Its hash is in the
/// Content-Security-Policy.
pub const SCRIPT: &str = "\
(function(){
var open=function(){var s={};document.querySelectorAll('details[open][id]').forEach(function(d){s[d.id]=1});return s};
function tick(){
if(document.hidden){return}
fetch(location.pathname,{cache:'no-store'}).then(function(r){return r.ok?r.text():null}).then(function(t){
if(!t){return}
var doc=new DOMParser().parseFromString(t,'text/html');
var fresh=doc.getElementById('status'),cur=document.getElementById('status');
if(!fresh||!cur){return}
var o=open();fresh.querySelectorAll('details[id]').forEach(function(d){if(o[d.id]){d.open=true}});
cur.replaceWith(document.importNode(fresh,true));
}).catch(function(){});
}
setInterval(tick,5000);
})();
";

/// `s` made safe as HTML text or a quoted attribute value: `& < > " '`
/// as entities; control characters (but newline and tab) and bidi
/// overrides spelled out, so that terminal escapes and reordering tricks
/// are shown, never interpreted.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    push_esc(&mut out, s);
    out
}

/// `s` cut to at most `max` bytes at a character boundary (an ellipsis
/// marks the cut).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
    out
}

/// [`esc`] of the first [`MAX_TEXT`] bytes of `s`.
fn text(s: &str) -> String {
    esc(&clip(s, MAX_TEXT))
}

/// `None` for the empty string, proto3's "not known".
fn known(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// `None` for 0, where the `.proto` says 0 is not known.
fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

fn push_esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Bytes for people: `192.0 MiB`.
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

fn signed_bytes(v: i64) -> String {
    if v < 0 {
        format!("−{}", bytes(v.unsigned_abs()))
    } else {
        bytes(v.unsigned_abs())
    }
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), bytes)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.2}%"))
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "—".to_string(),
        Some(r) if r < 0.0 => format!("−{}/s", bytes(r.abs() as u64)),
        Some(r) => format!("+{}/s", bytes(r as u64)),
    }
}

fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_string();
    }
    let s = seconds.round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// `2026-12-06 06:50:46 UTC`.
pub fn time(unix_nano: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nano)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "—".to_string(),
    }
}

fn ago(now: u64, then: u64) -> String {
    if then > now {
        return "just now".to_string();
    }
    format!("{} ago", duration((now - then) as f64 / 1e9))
}

/// One line of an SVG chart.
struct Series<'a> {
    name: &'a str,
    /// (x, y) in data units.
    points: Vec<(f64, f64)>,
}

/// A line chart as inline SVG: up to two series (`s0`, `s1`), a dashed
/// limit line, an optional vertical mark (the kill) at `mark_x`. Labels
/// are formatted by `fmt_y` and `fmt_x` (their text is escaped).
struct Chart<'a> {
    width: u32,
    height: u32,
    label: &'a str,
    series: Vec<Series<'a>>,
    x_range: (f64, f64),
    y_max: f64,
    limit: Option<f64>,
    mark_x: Option<f64>,
    fmt_y: &'a dyn Fn(f64) -> String,
    x_labels: (String, String),
}

impl Chart<'_> {
    fn render(&self, out: &mut String) {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        // Room for the y labels on the left and the x labels below.
        let (left, right, top, bottom) = (58.0, 6.0, 6.0, 16.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let (x0, x1) = self.x_range;
        let xspan = if x1 > x0 { x1 - x0 } else { 1.0 };
        let ymax = if self.y_max > 0.0 { self.y_max } else { 1.0 };
        let px = |x: f64| left + (x - x0) / xspan * pw;
        let py = |y: f64| top + ph - (y / ymax).clamp(0.0, 1.0) * ph;
        let _ = write!(
            out,
            "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
            esc(self.label)
        );
        let _ = write!(
            out,
            "<rect class=\"frame\" x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\"/>"
        );
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
            left - 3.0,
            top + 9.0,
            esc(&(self.fmt_y)(ymax)),
            left - 3.0,
            top + ph
        );
        let _ = write!(
            out,
            "<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            h - 3.0,
            esc(&self.x_labels.0),
            w - right,
            h - 3.0,
            esc(&self.x_labels.1)
        );
        if let Some(limit) = self.limit {
            let y = py(limit);
            let _ = write!(
                out,
                "<line class=\"limit\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>limit {}</title></line>",
                left + pw,
                esc(&(self.fmt_y)(limit))
            );
        }
        if let Some(x) = self.mark_x {
            let x = px(x);
            let _ = write!(
                out,
                "<line class=\"kill\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{:.1}\"><title>kill</title></line>",
                top + ph
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            if s.points.is_empty() {
                continue;
            }
            let _ = write!(out, "<polyline class=\"s{}\" points=\"", i.min(1));
            for (n, (x, y)) in s.points.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{:.1},{:.1}", px(*x), py(*y));
            }
            let _ = write!(out, "\"><title>{}</title></polyline>", esc(s.name));
            if s.points.len() == 1 {
                // A single sample: a dot, or nothing would show.
                let (x, y) = s.points[0];
                let _ = write!(
                    out,
                    "<circle class=\"s{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>",
                    i.min(1),
                    px(x),
                    py(y)
                );
            }
        }
        out.push_str("</svg>");
    }
}

fn bytes_axis(v: f64) -> String {
    bytes(v.max(0.0) as u64)
}

fn pct_axis(v: f64) -> String {
    format!("{v:.0}%")
}

/// The whole page.
pub fn render(status: &Status) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>oomscope status</title><style>",
    );
    out.push_str(STYLE);
    out.push_str("</style></head><body>");
    render_main(&mut out, status);
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}

fn render_main(out: &mut String, st: &Status) {
    let _ = write!(
        out,
        "<main id=\"status\" data-time-unix-nano=\"{}\"><header><h1>oomscope</h1>\
         <span class=\"mut\">as of {}</span>\
         <a href=\"api/status.json\">status.json</a></header>",
        st.time_unix_nano,
        time(st.time_unix_nano)
    );
    if !st.incidents_enabled {
        out.push_str(
            "<p class=\"warn\">No <code>oom</code> receiver runs: kills are not seen.</p>",
        );
    }
    render_system(out, st);
    render_incidents(out, st);
    render_cgroups(out, st);
    render_processes(out, &st.snapshot.processes);
    out.push_str("</main>");
}

fn card(out: &mut String, id: &str, label: &str, value: &str, detail: &str) {
    let _ = write!(
        out,
        "<div class=\"card\" id=\"{id}\"><span class=\"mut\">{}</span><b>{}</b><span class=\"mut\">{}</span></div>",
        esc(label),
        esc(value),
        esc(detail)
    );
}

fn render_system(out: &mut String, st: &Status) {
    out.push_str("<section id=\"system\"><h2>System memory</h2>");
    let snapshot = &st.snapshot;
    match &snapshot.system {
        None => out.push_str(
            "<p class=\"mut\">No sample yet (the <code>memory</code> receiver samples the system).</p>",
        ),
        Some(s) => {
            out.push_str("<div class=\"cards\">");
            let used = match (s.total_bytes, s.available_bytes) {
                (Some(t), Some(a)) => Some(t.saturating_sub(a)),
                _ => None,
            };
            let used_pct = match (used, s.total_bytes) {
                (Some(u), Some(t)) if t > 0 => format!("{:.1}% of {}", u as f64 * 100.0 / t as f64, bytes(t)),
                _ => String::new(),
            };
            card(out, "sys-used", "Used", &opt_bytes(used), &used_pct);
            card(out, "sys-available", "Available", &opt_bytes(s.available_bytes), "");
            card(
                out,
                "sys-psi-some",
                "PSI some avg10",
                &pct(s.pressure.as_ref().and_then(|p| p.some_avg10)),
                &format!("avg60 {}", pct(s.psi_some_avg60)),
            );
            card(
                out,
                "sys-psi-full",
                "PSI full avg10",
                &pct(s.pressure.as_ref().and_then(|p| p.full_avg10)),
                &format!("avg60 {}", pct(s.psi_full_avg60)),
            );
            if let Some(at) = nonzero(snapshot.time_unix_nano) {
                card(out, "sys-sampled", "Sampled", &ago(st.time_unix_nano, at), &time(at));
            }
            out.push_str("</div>");
        }
    }
    render_history(out, st.time_unix_nano, &snapshot.history);
    out.push_str("</section>");
}

fn render_history(out: &mut String, now: u64, history: &[v1::SystemSample]) {
    if history.is_empty() {
        return;
    }
    let first = history.first().map_or(now, |p| p.time_unix_nano);
    let last = history.last().map_or(now, |p| p.time_unix_nano);
    // Minutes before the latest sample: the chart spans up to an hour.
    let x = |t: u64| -((last.saturating_sub(t)) as f64) / 60e9;
    let x0 = x(first).min(-1.0);
    let x_labels = (format!("{:.0} min ago", -x0), time(last));
    let used: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| {
            let (t, a) = (p.total_bytes?, p.available_bytes?);
            Some((x(p.time_unix_nano), t.saturating_sub(a) as f64))
        })
        .collect();
    let total = history.iter().filter_map(|p| p.total_bytes).max();
    out.push_str("<h3>The last hour</h3><div class=\"charts\">");
    out.push_str(
        "<figure id=\"chart-memory\"><figcaption><span class=\"key0\">■ used</span> \
         <span class=\"keyl\">┄ total</span></figcaption>",
    );
    Chart {
        width: 560,
        height: 150,
        label: "system memory used over the last hour",
        series: vec![Series {
            name: "used",
            points: used,
        }],
        x_range: (x0, 0.0),
        y_max: total.map_or(1.0, |t| t as f64 * 1.02),
        limit: total.map(|t| t as f64),
        mark_x: None,
        fmt_y: &bytes_axis,
        x_labels: x_labels.clone(),
    }
    .render(out);
    out.push_str("</figure>");
    let some: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| Some((x(p.time_unix_nano), p.psi_some_avg10?)))
        .collect();
    let full: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| Some((x(p.time_unix_nano), p.psi_full_avg10?)))
        .collect();
    let peak = some
        .iter()
        .chain(full.iter())
        .map(|p| p.1)
        .fold(0.0_f64, f64::max);
    // At least 0–10%: a quiet system shows as a flat line, not as noise.
    let y_max = if peak <= 10.0 {
        10.0
    } else {
        (peak * 1.1).min(100.0)
    };
    out.push_str(
        "<figure id=\"chart-psi\"><figcaption><span class=\"key0\">■ PSI some avg10</span> \
         <span class=\"key1\">■ full avg10</span></figcaption>",
    );
    Chart {
        width: 560,
        height: 150,
        label: "memory pressure over the last hour",
        series: vec![
            Series {
                name: "some avg10",
                points: some,
            },
            Series {
                name: "full avg10",
                points: full,
            },
        ],
        x_range: (x0, 0.0),
        y_max,
        limit: None,
        mark_x: None,
        fmt_y: &pct_axis,
        x_labels,
    }
    .render(out);
    out.push_str("</figure></div>");
}

fn render_incidents(out: &mut String, st: &Status) {
    let _ = write!(
        out,
        "<section id=\"incidents\"><h2>Latest incidents <span class=\"mut\">({})</span></h2>",
        st.incidents.len()
    );
    if st.incidents.is_empty() {
        out.push_str("<p class=\"mut\">None.</p>");
    }
    for incident in &st.incidents {
        render_incident(out, st.time_unix_nano, incident);
    }
    out.push_str("</section>");
}

fn dl_row(out: &mut String, key: &str, field: &str, value: &str) {
    let _ = write!(
        out,
        "<dt>{}</dt><dd data-field=\"{field}\">{}</dd>",
        esc(key),
        text(value)
    );
}

fn render_incident(out: &mut String, now: u64, i: &v1::Incident) {
    let id = esc(&i.id);
    let _ = write!(
        out,
        "<article class=\"incident\" id=\"incident-{id}\" data-incident-id=\"{id}\">"
    );
    out.push_str("<div class=\"head\">");
    let (no_victim, no_trigger, no_scope) = (
        v1::Victim::default(),
        v1::Trigger::default(),
        v1::Scope::default(),
    );
    let kill = i.kill.as_ref().map(|k| {
        (
            k,
            k.victim.as_ref().unwrap_or(&no_victim),
            k.trigger.as_ref().unwrap_or(&no_trigger),
            k.scope.as_ref().unwrap_or(&no_scope),
        )
    });
    match kill {
        Some((_, v, _, _)) => {
            let _ = write!(
                out,
                "<h3>Killed <span class=\"victim\" data-field=\"victim-comm\">{}</span> \
                 (pid <span data-field=\"victim-pid\">{}</span>)</h3>",
                text(&v.comm),
                v.pid
            );
        }
        None => {
            let pids: Vec<String> = i.pids.iter().map(ToString::to_string).collect();
            let _ = write!(
                out,
                "<h3>Runtime out of memory, no kill seen (pid {})</h3>",
                text(&pids.join(", "))
            );
        }
    }
    let when = i
        .kill
        .as_ref()
        .map_or(i.start_time_unix_nano, |k| k.time_unix_nano);
    let _ = write!(
        out,
        "<span data-field=\"time\" data-time-unix-nano=\"{when}\">{} ({})</span>\
         <span class=\"id mut\">id <span data-field=\"incident-id\">{id}</span></span></div>",
        time(when),
        ago(now, when)
    );
    out.push_str("<div class=\"grid\"><div><dl>");
    match kill {
        Some((k, v, t, s)) => {
            let cgroup = known(&v.cgroup).or(known(&i.cgroup)).unwrap_or("—");
            dl_row(out, "cgroup", "victim-cgroup", cgroup);
            let container = known(&v.container_name)
                .or(known(&v.container_id))
                .or(known(&i.container_id));
            if let Some(container) = container {
                dl_row(out, "container", "victim-container", container);
            }
            if let Some(pod) = known(&v.k8s_pod_name) {
                let ns = &v.k8s_namespace_name;
                dl_row(out, "pod", "victim-pod", &format!("{ns}/{pod}"));
            }
            if let Some(exe) = known(&v.executable_path) {
                dl_row(out, "executable", "victim-executable", exe);
            }
            if let Some(cmd) = known(&v.command_line) {
                dl_row(out, "command", "victim-command-line", cmd);
            }
            dl_row(out, "anon rss", "victim-anon-rss", &bytes(v.anon_rss_bytes));
            let scope = match (known(&s.trigger_type), known(&s.constraint)) {
                (Some(t), Some(c)) => format!("{t} ({c})"),
                (Some(t), None) => t.to_string(),
                (None, Some(c)) => c.to_string(),
                (None, None) => "—".to_string(),
            };
            dl_row(out, "scope", "scope", &scope);
            if let Some(memcg) = known(&s.memcg) {
                dl_row(out, "memcg", "scope-memcg", memcg);
            }
            if let Some(comm) = known(&t.comm) {
                let pid = nonzero(t.pid).map_or_else(String::new, |p| format!(" (pid {p})"));
                dl_row(out, "triggered by", "trigger", &format!("{comm}{pid}"));
            }
            dl_row(out, "seen by", "source", &k.source);
        }
        None => {
            if let Some(c) = known(&i.cgroup) {
                dl_row(out, "cgroup", "cgroup", c);
            }
            if let Some(c) = known(&i.container_id) {
                dl_row(out, "container", "container", c);
            }
        }
    }
    let lead_up = kill.and_then(|(k, _, _, s)| {
        let memcg_limit = nonzero(s.memcg_limit_bytes);
        k.lead_up
            .as_ref()
            .map(|l| (k.time_unix_nano, l, memcg_limit))
    });
    if let Some((kill_time, l, memcg_limit)) = lead_up {
        render_lead_up_facts(out, l, memcg_limit, kill_time);
    }
    out.push_str("</dl></div><div>");
    if let Some((kill_time, l, memcg_limit)) = lead_up {
        render_lead_up_chart(out, &i.id, kill_time, l, memcg_limit);
    }
    out.push_str("</div></div>");
    if let Some((_, l, _)) = lead_up {
        render_tasks(out, &i.id, l);
    }
    render_messages(out, &i.messages, i.messages_dropped);
    out.push_str("</article>");
}

fn render_lead_up_facts(
    out: &mut String,
    l: &v1::LeadUp,
    memcg_limit: Option<u64>,
    kill_time: u64,
) {
    if let Some(c) = known(&l.cgroup) {
        dl_row(out, "lead-up of", "leadup-cgroup", c);
    }
    let limit = l.limit_bytes.or(memcg_limit);
    let _ = write!(
        out,
        "<dt>limit</dt><dd data-field=\"leadup-limit\" data-bytes=\"{}\">{}</dd>",
        limit.map_or_else(String::new, |v| v.to_string()),
        esc(&opt_bytes(limit))
    );
    match l.samples.last() {
        Some(s) => {
            let _ = write!(
                out,
                "<dt>last sample</dt><dd data-field=\"leadup-last\" data-usage-bytes=\"{}\" \
                 data-working-set-bytes=\"{}\">usage {} · working set {} ({} before the kill)</dd>",
                s.usage_bytes,
                s.working_set_bytes,
                esc(&bytes(s.usage_bytes)),
                esc(&bytes(s.working_set_bytes)),
                esc(&duration(before_kill(kill_time, s)))
            );
        }
        None => dl_row(out, "last sample", "leadup-last", "none before the kill"),
    }
    if let Some(u) = l.usage_at_kill_bytes {
        let _ = write!(
            out,
            "<dt>usage at kill</dt><dd data-field=\"leadup-usage-at-kill\" data-bytes=\"{u}\">{}</dd>",
            esc(&bytes(u))
        );
    }
    dl_row(
        out,
        "growth",
        "leadup-growth",
        &format!(
            "{} over 10 s · {} over 60 s",
            rate(l.growth_rate_10s),
            rate(l.growth_rate_60s)
        ),
    );
    let psi = |p: &v1::Pressure| format!("some {} · full {}", pct(p.some_avg10), pct(p.full_avg10));
    if let Some(p) = &l.cgroup_pressure {
        dl_row(out, "cgroup PSI avg10", "leadup-cgroup-psi", &psi(p));
    }
    if let Some(p) = &l.system_pressure {
        dl_row(out, "system PSI avg10", "leadup-system-psi", &psi(p));
    }
    if let Some(e) = &l.events {
        let n = |v: Option<u64>| v.map_or_else(|| "—".to_string(), |v| v.to_string());
        dl_row(
            out,
            "memory.events",
            "leadup-events",
            &format!(
                "max {} · oom {} · oom_kill {} · high {}",
                n(e.max),
                n(e.oom),
                n(e.oom_kill),
                n(e.high)
            ),
        );
    }
    if let Some(f) = l.failcnt {
        dl_row(out, "failcnt", "leadup-failcnt", &f.to_string());
    }
}

/// Seconds from the sample `s` to the kill.
fn before_kill(kill_time: u64, s: &v1::CgroupSample) -> f64 {
    kill_time.saturating_sub(s.time_unix_nano) as f64 / 1e9
}

fn render_lead_up_chart(
    out: &mut String,
    id: &str,
    kill_time: u64,
    l: &v1::LeadUp,
    memcg_limit: Option<u64>,
) {
    let limit = l.limit_bytes.or(memcg_limit);
    if l.samples.is_empty() {
        out.push_str("<p class=\"mut\">No sample of the cgroup before the kill.</p>");
        return;
    }
    let peak = l
        .samples
        .iter()
        .map(|s| s.usage_bytes.max(s.working_set_bytes))
        .chain(l.usage_at_kill_bytes)
        .max()
        .unwrap_or(0);
    let y_max = limit.map_or(peak, |v| v.max(peak)) as f64 * 1.05;
    let x = |s: &v1::CgroupSample| -before_kill(kill_time, s);
    let x0 = l.samples.first().map_or(-60.0, x).min(-10.0);
    let _ = write!(
        out,
        "<figure class=\"leadup\" id=\"leadup-{}\"><figcaption>Lead-up: \
         <span class=\"key0\">■ usage</span> <span class=\"key1\">■ working set</span> \
         <span class=\"keyl\">┄ limit</span> (seconds before the kill)</figcaption>",
        esc(id)
    );
    Chart {
        width: 560,
        height: 170,
        label: "usage and working set before the kill",
        series: vec![
            Series {
                name: "usage",
                points: l
                    .samples
                    .iter()
                    .map(|s| (x(s), s.usage_bytes as f64))
                    .collect(),
            },
            Series {
                name: "working set",
                points: l
                    .samples
                    .iter()
                    .map(|s| (x(s), s.working_set_bytes as f64))
                    .collect(),
            },
        ],
        x_range: (x0, 0.0),
        y_max,
        limit: limit.map(|v| v as f64),
        mark_x: Some(0.0),
        fmt_y: &bytes_axis,
        x_labels: (format!("{x0:.0} s"), "kill".to_string()),
    }
    .render(out);
    out.push_str("</figure>");
}

fn render_tasks(out: &mut String, id: &str, l: &v1::LeadUp) {
    if l.tasks.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<details id=\"tasks-{}\"><summary>The kernel's task table: {} largest of {}</summary>\
         <table><thead><tr><th class=\"n\">pid</th><th>name</th><th class=\"n\">rss</th>\
         <th class=\"n\">oom_score_adj</th></tr></thead><tbody>",
        esc(id),
        l.tasks.len(),
        l.task_count
    );
    for t in &l.tasks {
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            t.pid,
            text(&t.name),
            esc(&bytes(t.rss_bytes)),
            t.oom_score_adj
        );
    }
    out.push_str("</tbody></table></details>");
}

fn render_messages(out: &mut String, messages: &[v1::RuntimeMessage], dropped: u64) {
    for m in messages {
        let pid = nonzero(m.pid).map_or_else(String::new, |p| format!(", pid {p}"));
        let _ = write!(
            out,
            "<div class=\"message\" data-runtime=\"{}\"><h3>{} message <span class=\"mut\">{} · {}{} · {}</span></h3><pre>",
            text(&m.runtime),
            text(&m.runtime),
            text(&m.pattern),
            text(&m.source),
            esc(&pid),
            time(m.time_unix_nano)
        );
        let lines: Vec<&str> = m.text.lines().collect();
        for line in lines.iter().take(MESSAGE_LINES) {
            push_esc(out, &clip(line, MESSAGE_LINE_BYTES));
            out.push('\n');
        }
        if lines.len() > MESSAGE_LINES {
            let _ = writeln!(out, "… {} more lines", lines.len() - MESSAGE_LINES);
        }
        out.push_str("</pre></div>");
    }
    if dropped > 0 {
        let _ = write!(
            out,
            "<p class=\"mut\">{dropped} more messages not kept.</p>"
        );
    }
}

fn render_cgroups(out: &mut String, st: &Status) {
    out.push_str("<section id=\"cgroups\"><h2>Cgroups nearest their limits</h2>");
    let cgroups = &st.snapshot.cgroups;
    if cgroups.is_empty() {
        out.push_str("<p class=\"mut\">None sampled.</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>cgroup</th><th class=\"n\">working set</th><th class=\"n\">limit</th>\
         <th class=\"n\">headroom</th><th class=\"n\">time to limit</th><th>last 90 s</th></tr></thead><tbody>",
    );
    for c in cgroups {
        render_cgroup(out, c);
    }
    out.push_str("</tbody></table></section>");
}

fn render_cgroup(out: &mut String, c: &v1::CgroupState) {
    let _ = write!(
        out,
        "<tr class=\"cgroup\" data-path=\"{}\"><td class=\"path\">{}",
        esc(&c.path),
        text(&c.path)
    );
    let who: Vec<&str> = [known(&c.pod_name), known(&c.container_name)]
        .into_iter()
        .flatten()
        .collect();
    if !who.is_empty() {
        let _ = write!(
            out,
            "<br><span class=\"mut\">{}</span>",
            text(&who.join(" / "))
        );
    }
    out.push_str("</td>");
    let _ = write!(
        out,
        "<td class=\"n\">{}</td><td class=\"n\">{}</td>",
        esc(&opt_bytes(c.working_set_bytes)),
        esc(&opt_bytes(c.limit_bytes))
    );
    let headroom_class = match (c.headroom_bytes, c.limit_bytes) {
        (Some(h), Some(l)) if l > 0 && (h as f64) < l as f64 * 0.1 => "bad",
        (Some(h), Some(l)) if l > 0 && (h as f64) < l as f64 * 0.25 => "warn",
        _ => "",
    };
    let _ = write!(
        out,
        "<td class=\"n {headroom_class}\">{}",
        esc(&c
            .headroom_bytes
            .map_or_else(|| "—".to_string(), signed_bytes))
    );
    if let (Some(ws), Some(limit)) = (c.working_set_bytes, c.limit_bytes) {
        if limit > 0 {
            let _ = write!(
                out,
                "<br><meter min=\"0\" max=\"{limit}\" low=\"{}\" high=\"{}\" optimum=\"0\" value=\"{}\"></meter>",
                limit / 4 * 3,
                limit / 10 * 9,
                ws.min(limit)
            );
        }
    }
    let _ = write!(
        out,
        "</td><td class=\"n\">{}</td><td>",
        esc(&c
            .time_to_limit_seconds
            .map_or_else(|| "—".to_string(), duration))
    );
    if c.samples.len() > 1 {
        let last = c.samples.last().map_or(0, |s| s.time_unix_nano);
        let first = c.samples.first().map_or(0, |s| s.time_unix_nano);
        let x = |t: u64| -((last.saturating_sub(t)) as f64) / 1e9;
        let peak = c
            .samples
            .iter()
            .map(|s| s.usage_bytes.max(s.working_set_bytes))
            .max()
            .unwrap_or(0);
        let y_max = c.limit_bytes.map_or(peak, |l| l.max(peak)) as f64 * 1.05;
        Chart {
            width: 220,
            height: 56,
            label: "working set",
            series: vec![Series {
                name: "working set",
                points: c
                    .samples
                    .iter()
                    .map(|s| (x(s.time_unix_nano), s.working_set_bytes as f64))
                    .collect(),
            }],
            x_range: (x(first).min(-1.0), 0.0),
            y_max,
            limit: c.limit_bytes.map(|l| l as f64),
            mark_x: None,
            fmt_y: &bytes_axis,
            x_labels: (format!("{:.0} s", x(first)), String::new()),
        }
        .render(out);
    }
    out.push_str("</td></tr>");
}

fn render_processes(out: &mut String, processes: &[v1::ProcessState]) {
    out.push_str("<section id=\"processes\"><h2>Largest processes</h2>");
    if processes.is_empty() {
        out.push_str("<p class=\"mut\">None sampled.</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th class=\"n\">pid</th><th>name</th><th class=\"n\">rss</th>\
         <th>cgroup</th></tr></thead><tbody>",
    );
    for p in processes {
        let _ = write!(
            out,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"path\">{}</td></tr>",
            p.pid,
            text(&p.name),
            esc(&bytes(p.rss_bytes)),
            text(known(&p.cgroup).unwrap_or("—"))
        );
    }
    out.push_str("</tbody></table></section>");
}
