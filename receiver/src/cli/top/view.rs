//! What `oomscope top` shows and how keys change it: [`App`] holds the
//! latest answers of the agent and the view's own state; [`render`] draws it
//! on any ratatui backend (a real terminal, or `TestBackend` in tests).
//!
//! Every string from the agent (cgroup paths, process names, runtime
//! messages) was chosen by whoever runs the workload: it goes through
//! [`printable`] before it reaches the terminal, so an escape sequence in a
//! cgroup name is drawn as text, never interpreted.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::api::v1::{
    CgroupState, HostSnapshot, Incident, LeadUp, OomKill, Pressure, ProcessState,
};

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;
/// Lines of each runtime message shown in an incident's detail.
const MESSAGE_LINES: usize = 12;
/// Width of the usage chart in the cgroup table.
const CHART_WIDTH: usize = 24;
/// The marker of the selected row (plain ASCII: it is what a test or a
/// screen reader finds in the text).
const HIGHLIGHT: &str = "> ";

/// How the cgroup table is ordered (`s` cycles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupSort {
    /// Least headroom first (the agent's own order).
    #[default]
    Headroom,
    /// Largest usage first.
    Usage,
    /// Soonest at its limit first.
    TimeToLimit,
}

impl CgroupSort {
    fn next(self) -> Self {
        match self {
            Self::Headroom => Self::Usage,
            Self::Usage => Self::TimeToLimit,
            Self::TimeToLimit => Self::Headroom,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Headroom => "headroom",
            Self::Usage => "usage",
            Self::TimeToLimit => "time to limit",
        }
    }
}

/// The table that arrow keys move in (`Tab` cycles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Focus {
    #[default]
    Cgroups,
    Incidents,
    Processes,
}

impl Focus {
    fn next(self) -> Self {
        match self {
            Self::Cgroups => Self::Incidents,
            Self::Incidents => Self::Processes,
            Self::Processes => Self::Cgroups,
        }
    }

    fn previous(self) -> Self {
        match self {
            Self::Cgroups => Self::Processes,
            Self::Incidents => Self::Cgroups,
            Self::Processes => Self::Incidents,
        }
    }
}

/// Whether the agent answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Before the first answer.
    Connecting,
    Connected,
    /// The last attempt failed, with why; the data shown is from before.
    Unreachable(String),
}

/// What a key asks the loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
}

/// Everything `top` draws.
#[derive(Debug)]
pub struct App {
    /// Where the agent is, as the user gave it.
    pub endpoint: String,
    pub link: Link,
    /// The latest answer to `Snapshot` (None: none yet).
    pub snapshot: Option<HostSnapshot>,
    /// The latest answer to `ListIncidents`, newest first.
    pub incidents: Vec<Incident>,
    pub sort: CgroupSort,
    pub focus: Focus,
    cgroup_row: usize,
    process_row: usize,
    /// The selected incident by id: new incidents come first and must not
    /// move the selection.
    incident_selected: Option<String>,
    /// The incident whose detail is open.
    detail: Option<String>,
    detail_scroll: u16,
}

impl App {
    #[must_use]
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            link: Link::Connecting,
            snapshot: None,
            incidents: Vec::new(),
            sort: CgroupSort::default(),
            focus: Focus::default(),
            cgroup_row: 0,
            process_row: 0,
            incident_selected: None,
            detail: None,
            detail_scroll: 0,
        }
    }

    /// A fresh answer from the agent.
    pub fn update(&mut self, snapshot: HostSnapshot, incidents: Vec<Incident>) {
        self.snapshot = Some(snapshot);
        self.incidents = incidents;
        self.link = Link::Connected;
        self.clamp();
    }

    /// The agent did not answer; what was shown stays.
    pub fn unreachable(&mut self, why: impl Into<String>) {
        self.link = Link::Unreachable(why.into());
    }

    /// The id of the incident whose detail is open.
    #[must_use]
    pub fn open_incident(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn clamp(&mut self) {
        let cgroups = self.snapshot.as_ref().map_or(0, |s| s.cgroups.len());
        let processes = self.snapshot.as_ref().map_or(0, |s| s.processes.len());
        self.cgroup_row = self.cgroup_row.min(cgroups.saturating_sub(1));
        self.process_row = self.process_row.min(processes.saturating_sub(1));
        if self.incident_index().is_none() {
            self.incident_selected = self.incidents.first().map(|i| i.id.clone());
        }
    }

    fn incident_index(&self) -> Option<usize> {
        let id = self.incident_selected.as_deref()?;
        self.incidents.iter().position(|i| i.id == id)
    }

    /// The cgroups in the chosen order.
    fn sorted_cgroups(&self) -> Vec<&CgroupState> {
        let mut cgroups: Vec<&CgroupState> = self
            .snapshot
            .as_ref()
            .map(|s| s.cgroups.iter().collect())
            .unwrap_or_default();
        // Unknown values last whatever the order; the sort is stable, so
        // ties keep the agent's order (least headroom first).
        match self.sort {
            CgroupSort::Headroom => {
                cgroups.sort_by_key(|c| (c.headroom_bytes.is_none(), c.headroom_bytes));
            }
            CgroupSort::Usage => {
                cgroups.sort_by_key(|c| std::cmp::Reverse(c.usage_bytes.unwrap_or(0)));
            }
            CgroupSort::TimeToLimit => cgroups.sort_by(|a, b| {
                let key = |c: &CgroupState| c.time_to_limit_seconds.filter(|t| t.is_finite());
                match (key(a), key(b)) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
            }),
        }
        cgroups
    }

    /// Applies one key.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        // Raw mode delivers Ctrl-C as a key.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if key.code == KeyCode::Char('q') {
            return Action::Quit;
        }
        if self.detail.is_some() {
            match key.code {
                KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                    self.detail = None;
                    self.detail_scroll = 0;
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.detail_scroll = self.detail_scroll.saturating_add(1);
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.detail_scroll = self.detail_scroll.saturating_sub(1);
                }
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.detail_scroll = self.detail_scroll.saturating_add(10);
                }
                KeyCode::PageUp => self.detail_scroll = self.detail_scroll.saturating_sub(10),
                KeyCode::Home | KeyCode::Char('g') => self.detail_scroll = 0,
                _ => {}
            }
            return Action::None;
        }
        match key.code {
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.previous(),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX),
            KeyCode::Enter if self.focus == Focus::Incidents => {
                self.detail = self.incident_index().map(|i| self.incidents[i].id.clone());
                self.detail_scroll = 0;
            }
            _ => {}
        }
        Action::None
    }

    fn move_selection(&mut self, by: isize) {
        let step = |row: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            row.saturating_add_signed(by).min(len - 1)
        };
        match self.focus {
            Focus::Cgroups => {
                let len = self.snapshot.as_ref().map_or(0, |s| s.cgroups.len());
                self.cgroup_row = step(self.cgroup_row, len);
            }
            Focus::Processes => {
                let len = self.snapshot.as_ref().map_or(0, |s| s.processes.len());
                self.process_row = step(self.process_row, len);
            }
            Focus::Incidents => {
                let row = step(self.incident_index().unwrap_or(0), self.incidents.len());
                self.incident_selected = self.incidents.get(row).map(|i| i.id.clone());
            }
        }
    }
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, app: &App) {
    let [header, status, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(app)), header);
    frame.render_widget(Paragraph::new(status_line(app)), status);
    match app.detail.as_deref() {
        Some(id) => render_detail(frame, body, app, id),
        None => render_main(frame, body, app),
    }
}

fn header_line(app: &App) -> Line<'static> {
    let keys = if app.detail.is_some() {
        "Esc back  ↑↓ scroll  q quit"
    } else {
        "q quit  s sort  Tab focus  ↑↓/jk select  Enter open"
    };
    Line::from(vec![
        Span::styled(
            "oomscope top",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", printable(&app.endpoint))),
        Span::styled(keys, Style::default().fg(Color::DarkGray)),
    ])
}

fn status_line(app: &App) -> Line<'static> {
    let warn = Style::default().fg(Color::Black).bg(Color::Yellow);
    match &app.link {
        Link::Connecting => Line::from(format!("connecting to the agent at {} ...", printable(&app.endpoint))),
        Link::Unreachable(why) => Line::styled(
            format!(
                "agent unreachable at {}: {}; retrying every second{}",
                printable(&app.endpoint),
                printable(why),
                if app.snapshot.is_some() {
                    " (showing the last answer)"
                } else {
                    ""
                }
            ),
            Style::default().fg(Color::White).bg(Color::Red),
        ),
        Link::Connected => match &app.snapshot {
            Some(s) if s.time_unix_nano == 0 => Line::styled(
                "no memory samples: the agent has no `memory` receiver in a pipeline (or it has not \
                 sampled yet); incidents still show",
                warn,
            ),
            Some(s) => Line::from(format!(
                "sampled {} UTC  cgroups by {}",
                clock(s.time_unix_nano),
                app.sort.label()
            )),
            None => Line::from(""),
        },
    }
}

fn render_main(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [system, cgroups, incidents, processes] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Fill(2),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(system_lines(app.snapshot.as_ref()))
            .block(Block::default().borders(Borders::ALL).title(" system ")),
        system,
    );
    render_cgroups(frame, cgroups, app);
    render_incidents(frame, incidents, app);
    render_processes(frame, processes, app);
}

fn system_lines(snapshot: Option<&HostSnapshot>) -> Line<'static> {
    let Some(system) = snapshot.and_then(|s| s.system.as_ref()) else {
        return Line::from("memory -  pressure -");
    };
    let mut text = format!(
        "memory total {}  available {}",
        opt_bytes(system.total_bytes),
        opt_bytes(system.available_bytes)
    );
    if let (Some(total), Some(available)) = (system.total_bytes, system.available_bytes) {
        if total > 0 {
            text.push_str(&format!(
                " ({:.0}%)",
                available as f64 * 100.0 / total as f64
            ));
        }
    }
    let pressure = system.pressure.unwrap_or_default();
    text.push_str(&format!(
        "   PSI some avg10 {} avg60 {}  full avg10 {} avg60 {}",
        percent(pressure.some_avg10),
        percent(system.psi_some_avg60),
        percent(pressure.full_avg10),
        percent(system.psi_full_avg60)
    ));
    Line::from(text)
}

fn table_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::default()
            .fg(Color::Cyan)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, style))
}

fn header_row(names: &[&'static str]) -> Row<'static> {
    Row::new(names.iter().copied().map(Cell::from))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
}

fn selected_style(focused: bool) -> Style {
    if focused {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
    }
}

/// Width left for a `Fill` column: the area less borders, the highlight
/// column, the fixed columns and the gaps between columns.
fn fill_width(area: Rect, fixed: &[u16]) -> usize {
    let gaps = u16::try_from(fixed.len()).unwrap_or(u16::MAX);
    let used = fixed
        .iter()
        .fold(2 + 2 + gaps, |sum, w| sum.saturating_add(*w));
    usize::from(area.width.saturating_sub(used)).max(8)
}

fn render_cgroups(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let focused = app.focus == Focus::Cgroups;
    let cgroups = app.sorted_cgroups();
    let fixed = [10, 10, 10, 11, 9, CHART_WIDTH as u16];
    let path_width = fill_width(area, &fixed);
    let rows = cgroups.iter().map(|c| {
        let mut name = shorten_left(&printable(&c.path), path_width);
        let label = [&c.container_name, &c.pod_name]
            .into_iter()
            .find(|s| !s.is_empty());
        if let Some(label) = label {
            name = shorten_left(
                &format!("{} ({})", printable(&c.path), printable(label)),
                path_width,
            );
        }
        let headroom_style = match (c.headroom_bytes, c.limit_bytes) {
            (Some(h), Some(limit)) if limit > 0 && (h as f64) < limit as f64 * 0.1 => {
                Style::default().fg(Color::Red)
            }
            _ => Style::default(),
        };
        Row::new(vec![
            Cell::from(name),
            Cell::from(opt_bytes(c.usage_bytes)),
            Cell::from(opt_bytes(c.working_set_bytes)),
            Cell::from(c.limit_bytes.map_or_else(|| "none".to_owned(), bytes)),
            Cell::from(
                c.headroom_bytes
                    .map_or_else(|| "-".to_owned(), signed_bytes),
            )
            .style(headroom_style),
            Cell::from(time_to_limit(c.time_to_limit_seconds)),
            Cell::from(sparkline(c, CHART_WIDTH)),
        ])
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(fixed[0]),
        Constraint::Length(fixed[1]),
        Constraint::Length(fixed[2]),
        Constraint::Length(fixed[3]),
        Constraint::Length(fixed[4]),
        Constraint::Length(fixed[5]),
    ];
    let title = format!(
        " cgroups nearest their limit ({}, by {}; s: sort) ",
        cgroups.len(),
        app.sort.label()
    );
    let table = Table::new(rows, widths)
        .header(header_row(&[
            "CGROUP",
            "USAGE",
            "WORKSET",
            "LIMIT",
            "HEADROOM",
            "TO LIMIT",
            "USAGE (RECENT)",
        ]))
        .block(table_block(title, focused))
        .row_highlight_style(selected_style(focused))
        .highlight_symbol(if focused { HIGHLIGHT } else { "  " })
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected((!cgroups.is_empty()).then_some(app.cgroup_row));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_incidents(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let focused = app.focus == Focus::Incidents;
    let fixed = [8, 8, 15, 28, 10];
    let where_width = fill_width(area, &fixed);
    let rows = app.incidents.iter().map(|incident| {
        let kill = incident.kill.as_ref();
        let victim = kill.and_then(|k| k.victim.as_ref());
        let pid = victim
            .map(|v| v.pid)
            .or_else(|| incident.pids.first().copied())
            .filter(|pid| *pid > 0)
            .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let comm = victim.map_or_else(|| "(no kill)".to_owned(), |v| or_dash(printable(&v.comm)));
        Row::new(vec![
            Cell::from(clock(incident.start_time_unix_nano)),
            Cell::from(pid),
            Cell::from(comm),
            Cell::from(shorten_left(&incident_where(incident), where_width)),
            Cell::from(message_summary(incident)),
            Cell::from(id_prefix(&incident.id)),
        ])
    });
    let widths = [
        Constraint::Length(fixed[0]),
        Constraint::Length(fixed[1]),
        Constraint::Length(fixed[2]),
        Constraint::Fill(1),
        Constraint::Length(fixed[3]),
        Constraint::Length(fixed[4]),
    ];
    let title = format!(" incidents ({}; Enter: open) ", app.incidents.len());
    let table = Table::new(rows, widths)
        .header(header_row(&[
            "TIME",
            "PID",
            "COMM",
            "CGROUP / CONTAINER",
            "RUNTIME MESSAGE",
            "ID",
        ]))
        .block(table_block(title, focused))
        .row_highlight_style(selected_style(focused))
        .highlight_symbol(if focused { HIGHLIGHT } else { "  " })
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(app.incident_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_processes(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let focused = app.focus == Focus::Processes;
    let processes: &[ProcessState] = app
        .snapshot
        .as_ref()
        .map_or(&[], |s| s.processes.as_slice());
    let fixed = [8, 16, 10];
    let cgroup_width = fill_width(area, &fixed);
    let rows = processes.iter().map(|p| {
        Row::new(vec![
            Cell::from(p.pid.to_string()),
            Cell::from(or_dash(printable(&p.name))),
            Cell::from(bytes(p.rss_bytes)),
            Cell::from(shorten_left(&or_dash(printable(&p.cgroup)), cgroup_width)),
        ])
    });
    let widths = [
        Constraint::Length(fixed[0]),
        Constraint::Length(fixed[1]),
        Constraint::Length(fixed[2]),
        Constraint::Fill(1),
    ];
    let title = format!(" largest processes ({}) ", processes.len());
    let table = Table::new(rows, widths)
        .header(header_row(&["PID", "NAME", "RSS", "CGROUP"]))
        .block(table_block(title, focused))
        .row_highlight_style(selected_style(focused))
        .highlight_symbol(if focused { HIGHLIGHT } else { "  " })
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected((!processes.is_empty()).then_some(app.process_row));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_detail(frame: &mut Frame<'_>, area: Rect, app: &App, id: &str) {
    let lines = match app.incidents.iter().find(|i| i.id == id) {
        Some(incident) => detail_lines(incident),
        None => vec![Line::from(format!(
            "incident {} is no longer among the agent's latest incidents",
            printable(id)
        ))],
    };
    let title = format!(" incident {} (Esc: back) ", id_prefix(id));
    frame.render_widget(
        Paragraph::new(lines)
            .block(table_block(title, true))
            .scroll((app.detail_scroll, 0)),
        area,
    );
}

fn section(title: &str) -> Line<'static> {
    Line::styled(
        title.to_owned(),
        Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
    )
}

fn field(name: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("  {name:<22}"), Style::default().fg(Color::Cyan)),
        Span::raw(value),
    ])
}

/// The incident's detail: kill facts, lead-up, task table, messages.
fn detail_lines(incident: &Incident) -> Vec<Line<'static>> {
    let mut lines = vec![
        field("id", printable(&incident.id)),
        field("started", full_time(incident.start_time_unix_nano)),
        field(
            "processes",
            or_dash(
                incident
                    .pids
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
        field("cgroup", or_dash(printable(&incident.cgroup))),
    ];
    if !incident.container_id.is_empty() {
        lines.push(field("container", printable(&incident.container_id)));
    }
    lines.push(Line::from(""));
    match &incident.kill {
        Some(kill) => {
            kill_lines(kill, &mut lines);
            if let Some(lead_up) = &kill.lead_up {
                lines.push(Line::from(""));
                lead_up_lines(kill, lead_up, &mut lines);
            } else {
                lines.push(field("lead-up", "none recorded".to_owned()));
            }
        }
        None => {
            lines.push(section("Kill"));
            lines.push(Line::from("  no kill has joined this incident (yet)"));
        }
    }
    lines.push(Line::from(""));
    let dropped = if incident.messages_dropped > 0 {
        format!(", {} more dropped", incident.messages_dropped)
    } else {
        String::new()
    };
    lines.push(section(&format!(
        "Runtime messages ({}{dropped})",
        incident.messages.len()
    )));
    if incident.messages.is_empty() {
        lines.push(Line::from("  none"));
    }
    for message in &incident.messages {
        let pid = if message.pid > 0 {
            format!("  pid {}", message.pid)
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "  {}  {}  {}",
                    clock(message.time_unix_nano),
                    or_dash(printable(&message.runtime)),
                    or_dash(printable(&message.pattern)),
                ),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("{pid}  {}", printable(&message.source))),
        ]));
        let total = message.text.lines().count();
        for line in message.text.lines().take(MESSAGE_LINES) {
            lines.push(Line::from(format!(
                "    {}",
                printable(&line.replace('\t', "    "))
            )));
        }
        if total > MESSAGE_LINES {
            lines.push(Line::styled(
                format!("    ... {} more lines", total - MESSAGE_LINES),
                Style::default().fg(Color::DarkGray),
            ));
        }
    }
    lines
}

fn kill_lines(kill: &OomKill, lines: &mut Vec<Line<'static>>) {
    lines.push(section("Kill"));
    lines.push(field("time", full_time(kill.time_unix_nano)));
    if let Some(v) = &kill.victim {
        let exiting = if v.exiting { " (already exiting)" } else { "" };
        lines.push(field(
            "victim",
            format!("pid {}  {}{exiting}", v.pid, or_dash(printable(&v.comm))),
        ));
        if !v.command_line.is_empty() {
            lines.push(field("command line", printable(&v.command_line)));
        }
        lines.push(field(
            "memory",
            format!(
                "anon-rss {}  file-rss {}  shmem-rss {}  total-vm {}  oom_score_adj {}",
                bytes(v.anon_rss_bytes),
                bytes(v.file_rss_bytes),
                bytes(v.shmem_rss_bytes),
                bytes(v.total_vm_bytes),
                v.oom_score_adj
            ),
        ));
        lines.push(field("victim cgroup", or_dash(printable(&v.cgroup))));
        if !v.executable_path.is_empty() {
            lines.push(field("executable", printable(&v.executable_path)));
        }
        if !v.container_id.is_empty() || !v.container_name.is_empty() {
            let name = if v.container_name.is_empty() {
                String::new()
            } else {
                format!("{}  ", printable(&v.container_name))
            };
            lines.push(field(
                "container",
                format!("{name}{}", printable(&v.container_id)),
            ));
        }
        if !v.k8s_pod_name.is_empty() {
            lines.push(field(
                "pod",
                format!(
                    "{}/{}",
                    printable(&v.k8s_namespace_name),
                    printable(&v.k8s_pod_name)
                ),
            ));
        }
        if !v.k8s_pod_uid.is_empty() {
            lines.push(field("pod uid", printable(&v.k8s_pod_uid)));
        }
    }
    if let Some(t) = &kill.trigger {
        if t.pid != 0 || !t.comm.is_empty() {
            lines.push(field(
                "trigger",
                format!(
                    "pid {}  {}  gfp {}  order {}",
                    t.pid,
                    or_dash(printable(&t.comm)),
                    or_dash(printable(&t.gfp_mask)),
                    t.order
                ),
            ));
        }
    }
    if let Some(s) = &kill.scope {
        let limit = if s.memcg_limit_bytes > 0 {
            format!("  limit {}", bytes(s.memcg_limit_bytes))
        } else {
            String::new()
        };
        lines.push(field(
            "scope",
            format!(
                "{}  {}  memcg {}{limit}",
                or_dash(printable(&s.trigger_type)),
                or_dash(printable(&s.constraint)),
                or_dash(printable(&s.memcg)),
            ),
        ));
    }
    lines.push(field("source", or_dash(printable(&kill.source))));
}

fn lead_up_lines(kill: &OomKill, lead_up: &LeadUp, lines: &mut Vec<Line<'static>>) {
    lines.push(section(&format!(
        "Lead-up of {}",
        or_dash(printable(&lead_up.cgroup))
    )));
    match lead_up.samples.last() {
        Some(last) => {
            let age = kill.time_unix_nano.saturating_sub(last.time_unix_nano) as f64 / 1e9;
            lines.push(field(
                "at the last sample",
                format!(
                    "usage {}  working set {}  ({age:.1} s before the kill)",
                    bytes(last.usage_bytes),
                    bytes(last.working_set_bytes)
                ),
            ));
        }
        None => lines.push(field(
            "at the last sample",
            "no sample before the kill".to_owned(),
        )),
    }
    lines.push(field(
        "usage at the kill",
        opt_bytes(lead_up.usage_at_kill_bytes),
    ));
    lines.push(field(
        "growth",
        format!(
            "10s {}  60s {}",
            rate(lead_up.growth_rate_10s),
            rate(lead_up.growth_rate_60s)
        ),
    ));
    lines.push(field("limit", opt_bytes(lead_up.limit_bytes)));
    let mut counters = Vec::new();
    if let Some(e) = &lead_up.events {
        for (name, value) in [
            ("low", e.low),
            ("high", e.high),
            ("max", e.max),
            ("oom", e.oom),
            ("oom_kill", e.oom_kill),
            ("oom_group_kill", e.oom_group_kill),
        ] {
            if let Some(value) = value {
                counters.push(format!("{name} {value}"));
            }
        }
    }
    if let Some(failcnt) = lead_up.failcnt {
        counters.push(format!("failcnt {failcnt}"));
    }
    lines.push(field("events", or_dash(counters.join("  "))));
    lines.push(field(
        "PSI (avg10)",
        format!(
            "cgroup {}  system {}",
            pressure(lead_up.cgroup_pressure.as_ref()),
            pressure(lead_up.system_pressure.as_ref())
        ),
    ));
    let peak = lead_up
        .samples
        .iter()
        .map(|s| s.usage_bytes)
        .max()
        .unwrap_or(0);
    let scale = lead_up.limit_bytes.filter(|l| *l > 0).unwrap_or(peak);
    let chart = spark(lead_up.samples.iter().map(|s| s.usage_bytes), scale, 60);
    lines.push(field(
        "samples",
        format!("{}  {chart}", lead_up.samples.len()),
    ));
    lines.push(Line::from(""));
    lines.push(section(&format!(
        "Kernel task table (largest {} of {})",
        lead_up.tasks.len(),
        lead_up.task_count
    )));
    if lead_up.tasks.is_empty() {
        lines.push(Line::from("  none recorded"));
    } else {
        lines.push(Line::styled(
            format!(
                "  {:>8}  {:>10}  {:>13}  NAME",
                "PID", "RSS", "OOM_SCORE_ADJ"
            ),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        for t in &lead_up.tasks {
            lines.push(Line::from(format!(
                "  {:>8}  {:>10}  {:>13}  {}",
                t.pid,
                bytes(t.rss_bytes),
                t.oom_score_adj,
                printable(&t.name)
            )));
        }
    }
}

/// Where an incident happened: its container, else its cgroup.
fn incident_where(incident: &Incident) -> String {
    let kill = incident.kill.as_ref();
    let container = kill
        .and_then(|k| k.victim.as_ref())
        .map(|v| v.container_id.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or(&incident.container_id);
    if !container.is_empty() {
        return format!(
            "container {}",
            printable(&container.chars().take(12).collect::<String>())
        );
    }
    let cgroup = kill
        .and_then(|k| k.victim.as_ref())
        .map(|v| v.cgroup.as_str())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            kill.and_then(|k| k.scope.as_ref())
                .map(|s| s.memcg.as_str())
        })
        .filter(|c| !c.is_empty())
        .unwrap_or(&incident.cgroup);
    or_dash(printable(cgroup))
}

/// The runtime messages in a word each: their patterns (`java.heap_space`).
fn message_summary(incident: &Incident) -> String {
    let mut patterns: Vec<String> = Vec::new();
    for m in &incident.messages {
        let name = if m.pattern.is_empty() {
            &m.runtime
        } else {
            &m.pattern
        };
        let name = printable(name);
        if !patterns.contains(&name) {
            patterns.push(name);
        }
    }
    match patterns.len() {
        0 => "-".to_owned(),
        1 => patterns.swap_remove(0),
        n => format!("{} +{}", patterns[0], n - 1),
    }
}

fn id_prefix(id: &str) -> String {
    or_dash(printable(&id.chars().take(8).collect::<String>()))
}

/// Replaces what could drive the terminal or hide text: control characters
/// (C0, DEL, C1: escape sequences start with ESC or CSI) and the invisible
/// bidirectional and zero-width formatting characters become `?`; a tab
/// (stack traces indent with one) becomes a space.
#[must_use]
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '\t' {
                return ' ';
            }
            let invisible = matches!(c,
                '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}');
            if c.is_control() || invisible {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// Keeps the end of a long path, which names the workload.
fn shorten_left(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let keep = width.saturating_sub(1);
    let tail: String = text.chars().skip(count - keep).collect();
    format!("…{tail}")
}

fn bytes(value: u64) -> String {
    let v = value as f64;
    if v >= GIB {
        format!("{:.1} GiB", v / GIB)
    } else if v >= MIB {
        format!("{:.1} MiB", v / MIB)
    } else if v >= KIB {
        format!("{:.1} KiB", v / KIB)
    } else {
        format!("{value} B")
    }
}

fn signed_bytes(value: i64) -> String {
    if value < 0 {
        format!("-{}", bytes(value.unsigned_abs()))
    } else {
        bytes(value.unsigned_abs())
    }
}

fn opt_bytes(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), bytes)
}

fn rate(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let sign = if v < 0.0 { "-" } else { "+" };
            format!("{sign}{}/s", bytes(v.abs() as u64))
        }
        _ => "-".to_owned(),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}%"))
}

fn pressure(p: Option<&Pressure>) -> String {
    match p {
        Some(p) if p.some_avg10.is_some() || p.full_avg10.is_some() => format!(
            "some {} full {}",
            percent(p.some_avg10),
            percent(p.full_avg10)
        ),
        _ => "-".to_owned(),
    }
}

fn time_to_limit(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            if s < 60.0 {
                format!("{s:.0}s")
            } else if s < 3600.0 {
                format!("{:.0}m", s / 60.0)
            } else if s < 86400.0 {
                format!("{:.1}h", s / 3600.0)
            } else {
                ">1d".to_owned()
            }
        }
        _ => "-".to_owned(),
    }
}

/// A cgroup's recent usage as block characters, scaled to its limit (or
/// to its peak without one), newest on the right.
fn sparkline(cgroup: &CgroupState, width: usize) -> String {
    let peak = cgroup
        .samples
        .iter()
        .map(|s| s.usage_bytes)
        .max()
        .unwrap_or(0);
    let scale = cgroup.limit_bytes.filter(|l| *l > 0).unwrap_or(peak);
    spark(cgroup.samples.iter().map(|s| s.usage_bytes), scale, width)
}

fn spark(values: impl DoubleEndedIterator<Item = u64>, scale: u64, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if scale == 0 {
        return String::new();
    }
    let mut newest: Vec<u64> = values.rev().take(width).collect();
    newest.reverse();
    newest
        .into_iter()
        .map(|v| {
            let level = (v.min(scale) as f64 / scale as f64 * 7.0).round() as usize;
            BARS[level.min(7)]
        })
        .collect()
}

fn datetime(time_unix_nano: u64) -> Option<time::OffsetDateTime> {
    if time_unix_nano == 0 {
        return None;
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_unix_nano)).ok()
}

/// `HH:MM:SS` (UTC).
fn clock(time_unix_nano: u64) -> String {
    datetime(time_unix_nano).map_or_else(
        || "-".to_owned(),
        |t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn full_time(time_unix_nano: u64) -> String {
    datetime(time_unix_nano).map_or_else(
        || "-".to_owned(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        },
    )
}

#[cfg(test)]
mod tests;
