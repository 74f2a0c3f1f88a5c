//! One line of log text with its prefix taken off, so that the kernel's
//! messages (its OOM report first of all) are recognised in any log text:
//! `dmesg` output, `/var/log/messages` or `kern.log`, `journalctl`, a log
//! shipped from another host, a paste in a ticket.
//!
//! [`split_prefix`] recognises one prefix form per line and returns the
//! message (what the program printed), with what the prefix states: host,
//! syslog tag, the kernel's own timestamp, the wall-clock time. It borrows
//! from the line, never allocates, and looks at a bounded head of the line
//! (plus one pass over RFC 5424 structured data), so it costs O(line length)
//! at worst. A line that is none of the forms below is its own message
//! ([`PrefixForm::None`]); so are continuation lines without a prefix.
//! Leading blanks (spaces, tabs: pasted text), a UTF-8 byte order mark and
//! trailing CR/LF are removed from every line, and leading blanks from every
//! message.
//!
//! | form | example | source of the format |
//! |---|---|---|
//! | [`Dmesg`](PrefixForm::Dmesg) | `[12345.678901] msg`, `[    0.000000][    T1] msg` (caller id), `<4>[12345.678901] msg` (`dmesg -r`), `kern  :warn  : [12345.678901] msg` (`dmesg -x`), `[<    8.825467>] msg` (`--time-format=delta`), `<4>msg` | `man dmesg` (util-linux); the caller id: `CONFIG_PRINTK_CALLER`, kernel `printk.c` |
//! | [`DmesgHuman`](PrefixForm::DmesgHuman) | `[Sat Mar  2 03:04:05 2024] msg` (`dmesg -T`, local time, no zone); `[Mar 2 03:04] msg` and `[  +0.000036] msg` (`dmesg -H` / `--time-format=reltime`: no time returned) | `man dmesg` |
//! | [`Kmsg`](PrefixForm::Kmsg) | `6,1234,5678901,-;msg`, `6,1234,5678901,-,caller=T123;msg` (as `cat /dev/kmsg` writes) | kernel `Documentation/ABI/testing/dev-kmsg` |
//! | [`Syslog`](PrefixForm::Syslog) | `Mar  2 03:04:05 host kernel: [12345.678901] msg`, `Mar 02 03:04:05 host java[123]: msg` (`journalctl` short), `Mar 02 03:04:05.123456 host kernel: msg` (short-precise), `<4>Mar  2 03:04:05 host kernel: msg`; rsyslog `RSYSLOG_TraditionalFileFormat` | RFC 3164 section 4.1.2; `man journalctl`, OUTPUT OPTIONS |
//! | [`Iso8601`](PrefixForm::Iso8601) | `2024-03-02T03:04:05+0000 host kernel: msg` (`journalctl -o short-iso`), `2024-03-02T03:04:05.123456+01:00 host kernel: msg` (short-iso-precise, rsyslog `RSYSLOG_FileFormat`), `2024-03-02 03:04:05,123 host kernel: msg`, `2024-03-02T03:04:05,123456+00:00 msg` (`dmesg --time-format=iso`) | ISO 8601 / RFC 3339 section 5.6; `man journalctl`; `man dmesg` |
//! | [`Rfc5424`](PrefixForm::Rfc5424) | `<4>1 2024-03-02T03:04:05.123456+00:00 host kernel - - [sd@1 a="b"] msg` (rsyslog `RSYSLOG_SyslogProtocol23Format`) | RFC 5424 section 6 |
//! | [`JournalMonotonic`](PrefixForm::JournalMonotonic) | `[12345.678901] host kernel: msg` (`journalctl -o short-monotonic`), `[12345.678901 <    0.000123 >] host kernel: msg` (short-delta) | `man journalctl`, OUTPUT OPTIONS |
//! | [`JournalUnix`](PrefixForm::JournalUnix) | `1709348645.123456 host kernel: msg` (`journalctl -o short-unix`) | `man journalctl`, OUTPUT OPTIONS |
//! | [`JournalFull`](PrefixForm::JournalFull) | `Sat 2026-12-05 19:49:07 CET host kernel: msg` (`journalctl -o short-full`; a zone other than `UTC` or `+hhmm` gives a civil time) | `man journalctl`, OUTPUT OPTIONS |
//!
//! After a `kernel` tag, the kernel's `[12345.678901]` timestamp (rsyslog's
//! imklog and klogd keep it) is taken off too, into
//! [`TextLine::kernel_time_us`]. A task-table row of the OOM report,
//! `[  11976]     0 11976 ...`, is never a timestamp: one has a `.` fraction.
//! Old kernels' console glued `** 3 printk messages dropped ** ` before a
//! line: it is taken off into [`TextLine::printk_dropped`].
//!
//! Ambiguity: `[12.5] host kernel: msg` (journal) and `[12.5] usb 1-1: msg`
//! (dmesg) have the same shape, as have `dmesg --time-format=iso` and an ISO
//! syslog line. Where the format leaves the host and tag optional, they are
//! taken only for a `kernel` tag or a `name[pid]` tag (what journald
//! writes), so that kernel text such as `Hardware name: ...` stays whole.
//! BSD syslog, short-full and ISO timestamps with `T` and a zone (rsyslog,
//! `journalctl -o short-iso`) take any `tag:`, except in the exact shape
//! `dmesg --time-format=iso` writes (`,` and six digits, `+hh:mm`). Month and weekday names in
//! other languages (`journalctl` and `dmesg -T` follow the locale: `апр 04
//! 21:53:13`) are recognised as a prefix, without a time.
//!
//! rsyslog escapes control characters on reception as `#` and three octal
//! digits (`$EscapeControlCharactersOnReceive`, on by default; tabs too,
//! `$EscapeControlCharacterTab`), so a multi-line message arrives as one line
//! with `#012` between its lines: [`unfold_rsyslog`] splits and decodes it.
//!
//! `tests/data/log-prefixes/` holds one real OOM report as each of these
//! tools wrote it; the tests check that all give the same messages and times.
//!
//! Not recognised (returned whole): `journalctl -o verbose`, `json`,
//! `export`; kmsg dictionary lines (` SUBSYSTEM=...`) and the kernel's `\xNN`
//! escapes in kmsg text are left as they are.

use std::borrow::Cow;

/// Longest host name token taken from a prefix (RFC 5424 allows 255).
const MAX_HOST_BYTES: usize = 255;
/// Longest `tag:` token (RFC 3164 says 32; real tags such as
/// `org.gnome.Shell.desktop[1234]` are longer).
const MAX_TAG_BYTES: usize = 128;
/// Longest RFC 5424 APP-NAME / PROCID / MSGID token (the RFC's longest is 128).
const MAX_FIELD_BYTES: usize = 128;
/// Longest `/dev/kmsg` header extension (`,caller=T123`, ...).
const MAX_KMSG_EXTENSION_BYTES: usize = 128;
/// Longest month or weekday name (a localised abbreviation such as `févr.`).
const MAX_NAME_BYTES: usize = 16;

/// One line of log text, its prefix taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLine<'a> {
    /// The message: what the program (the kernel) printed, prefix and
    /// leading whitespace removed.
    pub message: &'a str,
    /// The syslog / journal host name, when the prefix names one.
    pub host: Option<&'a str>,
    /// The syslog tag / program (`kernel`, `java[123]`, `systemd`), without
    /// the `:`; the APP-NAME of RFC 5424 (its PROCID is not kept).
    pub tag: Option<&'a str>,
    /// The kernel's own timestamp `[12345.678901]` (time since boot, the
    /// monotonic clock) in microseconds; also a kmsg record's and a journal
    /// entry's monotonic time.
    pub kernel_time_us: Option<u64>,
    /// The wall-clock time the prefix states, when it states one.
    pub time: Option<LineTime>,
    /// Which prefix form was recognised (for tests and `analyze` diagnostics).
    pub form: PrefixForm,
    /// The printing task or CPU (`T123`, `C1`) when the kernel was built with
    /// `CONFIG_PRINTK_CALLER`: tells apart reports printed at the same time.
    pub caller: Option<&'a str>,
    /// The syslog priority (`facility * 8 + level`) when the prefix states it
    /// (`<4>`, kmsg's first field, `dmesg -x` names).
    pub syslog_priority: Option<u16>,
    /// N of the kernel console's `** N printk messages dropped ** ` note that
    /// old kernels glued before the next line: records were lost there.
    pub printk_dropped: Option<u64>,
}

impl<'a> TextLine<'a> {
    fn new(form: PrefixForm, message: &'a str) -> Self {
        TextLine {
            message,
            host: None,
            tag: None,
            kernel_time_us: None,
            time: None,
            form,
            caller: None,
            syslog_priority: None,
            printk_dropped: None,
        }
    }

    /// The message's lines when rsyslog folded it (`#012`): see
    /// [`unfold_rsyslog`].
    pub fn rsyslog_lines(&self) -> RsyslogLines<'a> {
        unfold_rsyslog(self.message)
    }

    /// Whether the line is from the kernel log: `Some(true)` for the dmesg
    /// and kmsg forms and for a `kernel` tag, `Some(false)` for another tag,
    /// `None` when the prefix does not say.
    pub fn from_kernel(&self) -> Option<bool> {
        match (self.tag, self.form) {
            (Some(tag), _) => Some(tag == "kernel"),
            (None, PrefixForm::Dmesg | PrefixForm::DmesgHuman | PrefixForm::Kmsg) => Some(true),
            _ => None,
        }
    }
}

/// Which prefix form a line had. See the module documentation for each
/// form's shapes and sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixForm {
    /// No prefix recognised: the whole line is the message.
    None,
    /// `dmesg`: `[12345.678901]`, also raw (`<4>`), decoded (`kern  :warn  :`).
    Dmesg,
    /// `dmesg -T` (`[Sat Mar  2 03:04:05 2024]`) and `dmesg -H` / reltime.
    DmesgHuman,
    /// `/dev/kmsg` records as `cat /dev/kmsg` writes them: `6,1234,5678901,-;`.
    Kmsg,
    /// BSD syslog / RFC 3164, `journalctl` short and short-precise.
    Syslog,
    /// An ISO 8601 / RFC 3339 timestamp: `journalctl -o short-iso`, rsyslog's
    /// RFC 3339 file format, `dmesg --time-format=iso`, `,` or `.` fractions.
    Iso8601,
    /// RFC 5424: `<4>1 2024-03-02T03:04:05.123456+00:00 host app - - - msg`.
    Rfc5424,
    /// `journalctl -o short-monotonic` (and short-delta).
    JournalMonotonic,
    /// `journalctl -o short-unix`.
    JournalUnix,
    /// `journalctl -o short-full`.
    JournalFull,
}

impl PrefixForm {
    /// A short name for diagnostics (`dmesg`, `syslog`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixForm::None => "none",
            PrefixForm::Dmesg => "dmesg",
            PrefixForm::DmesgHuman => "dmesg-human",
            PrefixForm::Kmsg => "kmsg",
            PrefixForm::Syslog => "syslog",
            PrefixForm::Iso8601 => "iso8601",
            PrefixForm::Rfc5424 => "rfc5424",
            PrefixForm::JournalMonotonic => "journal-monotonic",
            PrefixForm::JournalUnix => "journal-unix",
            PrefixForm::JournalFull => "journal-full",
        }
    }
}

/// The wall-clock time a prefix states, as precisely as it states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTime {
    /// The prefix states the UTC offset (or is Unix time): an exact instant.
    Instant {
        /// Nanoseconds since 1970-01-01T00:00:00Z.
        unix_nanos: u64,
    },
    /// A wall-clock date and time in a zone the prefix does not state
    /// (`dmesg -T`, BSD syslog, `journalctl` short, ISO without offset): the
    /// local time of the machine that wrote it.
    Civil {
        date_time: CivilDateTime,
        /// False when the prefix has no year (BSD syslog): the year is the
        /// [`TimeContext`]'s.
        year_stated: bool,
    },
}

impl LineTime {
    /// The time as nanoseconds since the Unix epoch; a civil time is taken
    /// to be at the context's UTC offset. `None` before 1970 or after 2554.
    pub fn unix_nanos(&self, ctx: &TimeContext) -> Option<u64> {
        match *self {
            LineTime::Instant { unix_nanos } => Some(unix_nanos),
            LineTime::Civil { date_time, .. } => {
                date_time.unix_nanos(i64::from(ctx.default_offset_seconds))
            }
        }
    }

    /// Whether the prefix stated the zone (UTC offset).
    pub fn zone_stated(&self) -> bool {
        matches!(self, LineTime::Instant { .. })
    }
}

/// A valid proleptic Gregorian date and time of day, no zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilDateTime {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31, valid for the month and year
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
    /// 0..=60 (60: a leap second, as RFC 3339 allows; counted as the next
    /// minute's 0)
    pub second: u8,
    /// 0..=999_999_999
    pub nanosecond: u32,
}

impl CivilDateTime {
    /// The date-time, or `None` when it does not exist (Feb 30, hour 24).
    pub fn new(
        year: i32,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        nanosecond: u32,
    ) -> Option<CivilDateTime> {
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour <= 23
            && minute <= 59
            && second <= 60
            && nanosecond <= 999_999_999;
        valid.then_some(CivilDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanosecond,
        })
    }

    /// Seconds since the Unix epoch of this wall-clock time at
    /// `utc_offset_seconds` east of UTC (negative before 1970).
    pub fn unix_seconds(&self, utc_offset_seconds: i64) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - utc_offset_seconds
    }

    fn unix_nanos(&self, utc_offset_seconds: i64) -> Option<u64> {
        u64::try_from(self.unix_seconds(utc_offset_seconds))
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(u64::from(self.nanosecond))
    }
}

/// What a prefix leaves unsaid about time, from the caller: the year of a
/// BSD syslog line and the zone of a civil time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    /// The year of a line whose prefix has none (BSD syslog, `journalctl`
    /// short), e.g. from the file's modification time.
    pub default_year: i32,
    /// Seconds east of UTC of a civil time whose zone is not stated, e.g.
    /// the local zone's offset.
    pub default_offset_seconds: i32,
    /// The month of the reference time `default_year` came from: a year-less
    /// line of a later month is from the year before (a file written in
    /// January holds December's lines). `None`: always `default_year`.
    pub reference_month: Option<u8>,
}

impl TimeContext {
    /// Year-less lines are in `year`, zone-less times are UTC.
    pub fn utc(year: i32) -> TimeContext {
        TimeContext {
            default_year: year,
            default_offset_seconds: 0,
            reference_month: None,
        }
    }

    /// Year-less lines are no later than `reference_unix_seconds` (a file's
    /// modification time) in the zone `utc_offset_seconds` east of UTC,
    /// which is also the zone of zone-less times.
    pub fn from_reference(reference_unix_seconds: i64, utc_offset_seconds: i32) -> TimeContext {
        let local = reference_unix_seconds.saturating_add(i64::from(utc_offset_seconds));
        let (year, month, _) = civil_from_days(local.div_euclid(86_400));
        TimeContext {
            default_year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
            default_offset_seconds: utc_offset_seconds,
            reference_month: Some(month),
        }
    }

    fn year_of_month(&self, month: u8) -> i32 {
        match self.reference_month {
            Some(reference) if month > reference => self.default_year.saturating_sub(1),
            _ => self.default_year,
        }
    }
}

/// Takes the prefix off one line of log text. Never panics; O(line length);
/// no allocation.
pub fn split_prefix<'a>(line: &'a str, ctx: &TimeContext) -> TextLine<'a> {
    let line = clean_line(line);
    let (printk_dropped, line) = match printk_dropped_note(line) {
        Some((dropped, rest)) => (Some(dropped), rest),
        None => (None, line),
    };
    let cursor = Cursor::new(line);
    let parsed = match cursor.peek() {
        Some(b'[') => bracketed(cursor, Journal::Allowed),
        Some(b'<') => with_priority(cursor, ctx),
        Some(b'0'..=b'9') => numeric(cursor),
        Some(_) => worded(cursor, ctx),
        None => None,
    };
    let mut parsed = parsed.unwrap_or_else(|| TextLine::new(PrefixForm::None, line));
    parsed.printk_dropped = printk_dropped;
    parsed
}

/// `** 3 printk messages dropped ** ` (kernel console, before 4.x's
/// `console_unlock` put it on a line of its own): the count and the rest.
fn printk_dropped_note(line: &str) -> Option<(u64, &str)> {
    let mut c = Cursor::new(line.strip_prefix("** ")?);
    let dropped = c.number(1, 20)?;
    let rest = c.rest().strip_prefix(" printk messages dropped **")?;
    Some((dropped, rest.trim_start_matches([' ', '\t'])))
}

/// Splits a message that rsyslog folded (its lines joined by `#012`) into
/// its lines and decodes the other `#ooo` control-character escapes (`#011`:
/// tab). The lines share the folded line's prefix; each keeps its own leading
/// whitespace (the kernel's ` active_file:...`, a stack trace's `\tat`). A
/// message without `#012` is one line. Lines are borrowed unless they hold
/// an escape to decode: no allocation for text without escapes.
///
/// `#` followed by three octal digits is decoded only when it names a control
/// character (what rsyslog escapes), so `issue #123` stays as it is.
pub fn unfold_rsyslog(message: &str) -> RsyslogLines<'_> {
    RsyslogLines {
        rest: Some(message),
    }
}

/// The lines of a message rsyslog folded: see [`unfold_rsyslog`].
#[derive(Debug, Clone)]
pub struct RsyslogLines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for RsyslogLines<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.rest?;
        let line = match rest.split_once("#012") {
            Some((line, after)) => {
                self.rest = Some(after);
                line
            }
            None => {
                self.rest = None;
                rest
            }
        };
        Some(decode_rsyslog_escapes(line))
    }
}

/// The control character a `#ooo` escape at the start of `bytes` stands for.
fn rsyslog_escape(bytes: &[u8]) -> Option<char> {
    let [b'#', a, b, c, ..] = *bytes else {
        return None;
    };
    let octal = |d: u8| (b'0'..=b'7').contains(&d).then(|| u32::from(d - b'0'));
    let value = octal(a)? * 64 + octal(b)? * 8 + octal(c)?;
    // rsyslog escapes what iscntrl() says: 0..=31 and DEL.
    if value < 0x20 || value == 0x7f {
        char::from_u32(value)
    } else {
        None
    }
}

fn decode_rsyslog_escapes(line: &str) -> Cow<'_, str> {
    let bytes = line.as_bytes();
    let Some(first) = (0..bytes.len()).find(|&i| rsyslog_escape(&bytes[i..]).is_some()) else {
        return Cow::Borrowed(line);
    };
    let mut decoded = String::with_capacity(line.len());
    decoded.push_str(line.get(..first).unwrap_or_default());
    let mut i = first;
    let mut copied_from = first;
    while i < bytes.len() {
        if bytes[i] == b'#' {
            if let Some(control) = rsyslog_escape(&bytes[i..]) {
                decoded.push_str(line.get(copied_from..i).unwrap_or_default());
                decoded.push(control);
                i += 4;
                copied_from = i;
                continue;
            }
        }
        i += 1;
    }
    decoded.push_str(line.get(copied_from..).unwrap_or_default());
    Cow::Owned(decoded)
}

/// The line without a byte order mark, leading blanks and trailing CR/LF.
fn clean_line(line: &str) -> &str {
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    line.trim_start_matches([' ', '\t'])
        .trim_end_matches(['\r', '\n'])
}

/// A position in the line. Moves only over ASCII bytes or whole tokens
/// ending before ASCII blanks, so every position is a char boundary.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Skips spaces and tabs; returns how many.
    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A decimal number of `min..=max` digits (more digits: `None`).
    fn number(&mut self, min: usize, max: usize) -> Option<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.pos - start == max {
                return None;
            }
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.pos += 1;
        }
        (self.pos - start >= min).then_some(value)
    }

    /// Two digits (more may follow: `+0100`), at most `max`.
    fn two_digits(&mut self, max: u8) -> Option<u8> {
        let bytes = self.text.as_bytes();
        let (tens, ones) = (*bytes.get(self.pos)?, *bytes.get(self.pos + 1)?);
        if !tens.is_ascii_digit() || !ones.is_ascii_digit() {
            return None;
        }
        let value = (tens - b'0') * 10 + (ones - b'0');
        if value > max {
            return None;
        }
        self.pos += 2;
        Some(value)
    }

    /// The digits of a fraction (1..=18 of them) as nanoseconds, and how many
    /// digits there were; digits past the ninth are dropped.
    fn fraction(&mut self) -> Option<(u32, usize)> {
        let start = self.pos;
        let mut nanos: u32 = 0;
        let mut scale: u32 = 100_000_000;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.pos - start == 18 {
                return None;
            }
            nanos += u32::from(digit - b'0') * scale;
            scale /= 10;
            self.pos += 1;
        }
        let digits = self.pos - start;
        (digits > 0).then_some((nanos, digits))
    }

    /// A run of 1..=`max` bytes up to the next blank or the end.
    fn token(&mut self, max: usize) -> Option<&'a str> {
        let start = self.pos;
        while let Some(byte) = self.peek() {
            if byte == b' ' || byte == b'\t' {
                break;
            }
            if self.pos - start == max {
                return None;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        self.text.get(start..self.pos)
    }

    /// A run of 1..=`max` letters (any script: names follow the locale),
    /// with an optional final `.` (`févr.`).
    fn name(&mut self, max: usize) -> Option<&'a str> {
        let start = self.pos;
        while let Some(byte) = self.peek() {
            if !(byte.is_ascii_alphabetic() || byte >= 0x80) {
                break;
            }
            if self.pos - start == max {
                return None;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        self.eat(b'.');
        // A run of non-ASCII bytes may stop inside a character that is not
        // a letter; `get` refuses a position that is not a boundary.
        self.text.get(start..self.pos)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Syslog levels as `dmesg -x` names them, by number.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
];
/// Syslog facilities as `dmesg -x` names them, by number.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "res0", "res1", "res2", "res3", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The month number of an English abbreviation (`Mar`); `None` for a name in
/// another language.
fn english_month(name: &str) -> Option<u8> {
    let index = MONTHS.iter().position(|month| *month == name)?;
    u8::try_from(index + 1).ok()
}

/// A month name: `Some(number)` when it is English, `Some(None)` for a name
/// in another language (still a prefix, without a time).
fn month_name(c: &mut Cursor) -> Option<Option<u8>> {
    let name = c.name(MAX_NAME_BYTES)?;
    let english = english_month(name);
    // A localised name must not be mistaken for English-looking words of a
    // message: at least two bytes, and only when the shape around it fits.
    (english.is_some() || name.len() >= 2).then_some(english)
}

/// A day of the month as `%e` (` 2`), `%d` (`02`) or bare (`2`) writes it.
fn day_of_month(c: &mut Cursor) -> Option<u8> {
    let day = if c.eat(b' ') {
        c.number(1, 1)?
    } else {
        c.number(1, 2)?
    };
    let day = u8::try_from(day).ok()?;
    (1..=31).contains(&day).then_some(day)
}

/// `hh:mm:ss`.
fn clock(c: &mut Cursor) -> Option<(u8, u8, u8)> {
    let hour = c.two_digits(23)?;
    c.expect(b':')?;
    let minute = c.two_digits(59)?;
    c.expect(b':')?;
    let second = c.two_digits(60)?;
    Some((hour, minute, second))
}

/// The kernel's timestamp `[12345.678901]` (leading spaces inside, any
/// fraction length), in microseconds. Also journalctl's short-delta
/// `[12345.678901 <    0.000123 >]`.
fn dmesg_stamp(c: &mut Cursor) -> Option<u64> {
    c.expect(b'[')?;
    c.skip_spaces();
    let seconds = c.number(1, 12)?;
    c.expect(b'.')?;
    let (nanos, _) = c.fraction()?;
    // short-delta pads the first entry (`[45021.273752                ]`)
    // and writes the time since the previous one: `[45021.273764 <    0.000012 >]`.
    c.skip_spaces();
    if !c.eat(b']') {
        c.expect(b'<')?;
        c.skip_spaces();
        c.number(1, 12)?;
        c.expect(b'.')?;
        c.fraction()?;
        c.skip_spaces();
        c.expect(b'>')?;
        c.expect(b']')?;
    }
    seconds
        .checked_mul(1_000_000)?
        .checked_add(u64::from(nanos / 1_000))
}

/// The caller id after a dmesg timestamp: `[    T123]` (or `C1`), directly
/// or after one space.
fn caller_id<'a>(c: &mut Cursor<'a>) -> Option<&'a str> {
    let mut probe = *c;
    probe.eat(b' ');
    probe.expect(b'[')?;
    probe.skip_spaces();
    let start = probe.pos;
    if !matches!(probe.peek(), Some(b'T' | b'C')) {
        return None;
    }
    probe.pos += 1;
    probe.number(1, 10)?;
    let id = probe.text.get(start..probe.pos)?;
    probe.expect(b']')?;
    *c = probe;
    Some(id)
}

/// `T123` (a task) or `C1` (a CPU), as `CONFIG_PRINTK_CALLER` writes them.
fn is_caller_id(id: &str) -> bool {
    id.strip_prefix(['T', 'C']).is_some_and(|number| {
        (1..=10).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The rest of the line as the message, leading blanks removed.
fn message_at(mut c: Cursor<'_>) -> &str {
    c.skip_blanks();
    c.rest()
}

/// Whether a `[12345.678901]` prefix may be journalctl's short-monotonic
/// (not after `dmesg -r`'s `<4>` or `dmesg -x`'s names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journal {
    Allowed,
    Excluded,
}

/// Lines whose prefix starts with `[`.
fn bracketed(start: Cursor, journal: Journal) -> Option<TextLine> {
    let mut c = start;
    if let Some(kernel_time_us) = dmesg_stamp(&mut c) {
        // journalctl -o short-monotonic: host and identifier follow.
        let mut after_stamp = c;
        after_stamp.skip_blanks();
        let journal_prefix = match journal {
            Journal::Allowed => host_and_tag(after_stamp, TagRule::KernelOrPid),
            Journal::Excluded => None,
        };
        if let Some((host, tag, after)) = journal_prefix {
            let mut line = TextLine::new(PrefixForm::JournalMonotonic, "");
            line.kernel_time_us = Some(kernel_time_us);
            line.host = Some(host);
            line.tag = Some(tag);
            return Some(after_tag(line, after));
        }
        let mut line = TextLine::new(PrefixForm::Dmesg, "");
        line.kernel_time_us = Some(kernel_time_us);
        line.caller = caller_id(&mut c);
        line.message = message_at(c);
        return Some(line);
    }

    // dmesg --time-format=delta: `[<    8.825467>]`.
    let mut c = start;
    if dmesg_delta(&mut c, b'<').is_some() {
        return Some(dmesg_line(PrefixForm::Dmesg, c));
    }
    // dmesg -H / --time-format=reltime: `[  +0.000036]`.
    let mut c = start;
    if dmesg_delta(&mut c, b'+').is_some() {
        return Some(dmesg_line(PrefixForm::DmesgHuman, c));
    }
    // dmesg -T: `[Sat Mar  2 03:04:05 2024]`.
    let mut c = start;
    if let Some(time) = dmesg_ctime(&mut c) {
        let mut line = dmesg_line(PrefixForm::DmesgHuman, c);
        line.time = time;
        return Some(line);
    }
    // dmesg -H / reltime, first line of a minute: `[Dec 5 18:26]`.
    let mut c = start;
    if dmesg_reltime_minute(&mut c).is_some() {
        return Some(dmesg_line(PrefixForm::DmesgHuman, c));
    }
    None
}

fn dmesg_line(form: PrefixForm, mut c: Cursor) -> TextLine {
    let mut line = TextLine::new(form, "");
    line.caller = caller_id(&mut c);
    line.message = message_at(c);
    line
}

/// `[<    8.825467>]` (`marker` `<`) or `[  +0.000036]` (`marker` `+`).
fn dmesg_delta(c: &mut Cursor, marker: u8) -> Option<()> {
    c.expect(b'[')?;
    if marker == b'<' {
        c.expect(b'<')?;
        c.skip_spaces();
    } else {
        c.skip_spaces();
        c.expect(b'+')?;
    }
    c.number(1, 12)?;
    c.expect(b'.')?;
    c.fraction()?;
    if marker == b'<' {
        c.expect(b'>')?;
    }
    c.expect(b']')
}

/// `[Sat Mar  2 03:04:05 2024]` (strftime `%a %b %e %H:%M:%S %Y`): the civil
/// time, `None` inside when the names are not English or the date does not
/// exist.
fn dmesg_ctime(c: &mut Cursor) -> Option<Option<LineTime>> {
    c.expect(b'[')?;
    let weekday = c.name(MAX_NAME_BYTES)?;
    c.expect(b' ')?;
    let month = month_name(c)?;
    c.expect(b' ')?;
    let day = day_of_month(c)?;
    c.expect(b' ')?;
    let (hour, minute, second) = clock(c)?;
    c.expect(b' ')?;
    let year = i32::try_from(c.number(4, 4)?).ok()?;
    c.expect(b']')?;
    let english = WEEKDAYS.contains(&weekday);
    let time = month
        .filter(|_| english)
        .and_then(|month| CivilDateTime::new(year, month, day, hour, minute, second, 0))
        .map(|date_time| LineTime::Civil {
            date_time,
            year_stated: true,
        });
    Some(time)
}

/// `[Dec 5 18:26]`: minutes only, no year; no time is returned for it.
fn dmesg_reltime_minute(c: &mut Cursor) -> Option<()> {
    c.expect(b'[')?;
    month_name(c)?;
    c.expect(b' ')?;
    day_of_month(c)?;
    c.expect(b' ')?;
    c.two_digits(23)?;
    c.expect(b':')?;
    c.two_digits(59)?;
    c.expect(b']')
}

/// Lines whose prefix starts with `<`: `dmesg -r`, RFC 5424, RFC 3164 as
/// sent on the wire.
fn with_priority<'a>(start: Cursor<'a>, ctx: &TimeContext) -> Option<TextLine<'a>> {
    let mut c = start;
    c.expect(b'<')?;
    let priority = u16::try_from(c.number(1, 3)?).ok()?;
    c.expect(b'>')?;
    let mut parsed = rfc5424(c, priority)
        .or_else(|| bracketed(c, Journal::Excluded))
        .or_else(|| bsd_syslog(c, ctx))
        // `dmesg -r` without timestamps.
        .unwrap_or_else(|| TextLine::new(PrefixForm::Dmesg, message_at(c)));
    parsed.syslog_priority = Some(priority);
    Some(parsed)
}

/// RFC 5424 after `<PRI>`: `1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`.
fn rfc5424(mut c: Cursor, priority: u16) -> Option<TextLine> {
    if priority > 191 {
        return None;
    }
    let version = c.number(1, 2)?;
    if version == 0 {
        return None;
    }
    c.expect(b' ')?;
    let time = if c.eat(b'-') {
        None
    } else {
        let stamp = iso_stamp(&mut c)?;
        if !stamp.t_separator {
            return None;
        }
        stamp.time()
    };
    c.expect(b' ')?;
    let host = nil_or(c.token(MAX_HOST_BYTES)?);
    c.expect(b' ')?;
    let app = nil_or(c.token(MAX_FIELD_BYTES)?);
    c.expect(b' ')?;
    c.token(MAX_FIELD_BYTES)?; // PROCID
    c.expect(b' ')?;
    c.token(MAX_FIELD_BYTES)?; // MSGID
    let mut line = TextLine::new(PrefixForm::Rfc5424, "");
    line.time = time;
    line.host = host;
    line.tag = app;
    if c.at_end() {
        line.message = c.rest();
        return Some(line);
    }
    c.expect(b' ')?;
    // STRUCTURED-DATA; when it is malformed the rest is taken as the message.
    let mut after_data = c;
    let data_ok = if after_data.eat(b'-') {
        true
    } else {
        structured_data(&mut after_data).is_some()
    };
    if data_ok && (after_data.at_end() || after_data.eat(b' ')) {
        c = after_data;
    }
    let mut rest = c;
    if rest.rest().starts_with('\u{feff}') {
        rest.pos += '\u{feff}'.len_utf8();
    }
    Some(after_tag(line, rest))
}

fn nil_or(token: &str) -> Option<&str> {
    (token != "-").then_some(token)
}

/// One or more `[id param="value" ...]` elements; `\"`, `\]` and `\\` are
/// escapes inside values.
fn structured_data(c: &mut Cursor) -> Option<()> {
    let bytes = c.text.as_bytes();
    let mut elements = 0;
    while c.peek() == Some(b'[') {
        c.pos += 1;
        let mut in_value = false;
        loop {
            let byte = *bytes.get(c.pos)?;
            c.pos += 1;
            match byte {
                b'\\' if in_value => c.pos += 1,
                b'"' => in_value = !in_value,
                b']' if !in_value => break,
                _ => {}
            }
        }
        elements += 1;
    }
    // An escape at the very end may step past it.
    (elements > 0 && c.pos <= c.text.len() && c.text.is_char_boundary(c.pos)).then_some(())
}

/// Lines whose prefix starts with a digit: kmsg, ISO 8601, journal Unix time.
fn numeric(start: Cursor) -> Option<TextLine> {
    kmsg(start)
        .or_else(|| iso_line(start))
        .or_else(|| journal_unix(start))
}

/// `prio,seq,usec,flag[,extension...];message` as `cat /dev/kmsg` prints it.
fn kmsg(mut c: Cursor) -> Option<TextLine> {
    let priority = u16::try_from(c.number(1, 4)?).ok()?;
    c.expect(b',')?;
    c.number(1, 20)?; // sequence number
    c.expect(b',')?;
    let monotonic_us = c.number(1, 20)?;
    c.expect(b',')?;
    // The flag: `-`, or `c` / `+` on old kernels.
    if !matches!(c.peek(), Some(b'-' | b'c' | b'+')) {
        return None;
    }
    c.pos += 1;
    let mut caller = None;
    let extensions_start = c.pos;
    while c.eat(b',') {
        let field_start = c.pos;
        while !matches!(c.peek(), Some(b',' | b';') | None) {
            if c.pos - extensions_start >= MAX_KMSG_EXTENSION_BYTES {
                return None;
            }
            c.pos += 1;
        }
        let field = c.text.get(field_start..c.pos)?;
        if let Some(id) = field.strip_prefix("caller=").filter(|id| is_caller_id(id)) {
            caller = Some(id);
        }
    }
    c.expect(b';')?;
    let mut line = TextLine::new(PrefixForm::Kmsg, message_at(c));
    line.kernel_time_us = Some(monotonic_us);
    line.syslog_priority = Some(priority);
    line.caller = caller;
    Some(line)
}

/// An ISO 8601 date and time as a log prefix writes it.
#[derive(Debug, Clone, Copy)]
struct IsoStamp {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
    /// `T` between date and time (else a space).
    t_separator: bool,
    /// `,` before the fraction (else `.` or no fraction).
    comma_fraction: bool,
    fraction_digits: usize,
    /// Seconds east of UTC, when stated.
    offset_seconds: Option<i32>,
    /// The offset was written `+hh:mm`.
    offset_with_colon: bool,
}

impl IsoStamp {
    fn time(&self) -> Option<LineTime> {
        let date_time = CivilDateTime::new(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanos,
        )?;
        match self.offset_seconds {
            Some(offset) => Some(LineTime::Instant {
                unix_nanos: date_time.unix_nanos(i64::from(offset))?,
            }),
            None => Some(LineTime::Civil {
                date_time,
                year_stated: true,
            }),
        }
    }

    /// What `dmesg --time-format=iso` writes (`2024-03-02T03:04:05,123456+01:00`,
    /// util-linux `ISO_TIMESTAMP_COMMA_T`): no host or tag follows, so only a
    /// `kernel` or `name[pid]` tag is taken.
    fn is_dmesg_iso(&self) -> bool {
        self.t_separator
            && self.comma_fraction
            && self.fraction_digits == 6
            && self.offset_seconds.is_some()
            && self.offset_with_colon
    }
}

/// `YYYY-MM-DD[T ]hh:mm:ss[(.|,)fraction][Z|±hh[:]mm|±hh]`.
fn iso_stamp(c: &mut Cursor) -> Option<IsoStamp> {
    let year = i32::try_from(c.number(4, 4)?).ok()?;
    c.expect(b'-')?;
    let month = c.two_digits(12)?;
    c.expect(b'-')?;
    let day = c.two_digits(31)?;
    if month == 0 || day == 0 {
        return None;
    }
    let t_separator = match c.peek() {
        Some(b'T' | b't') => true,
        Some(b' ') => false,
        _ => return None,
    };
    c.pos += 1;
    let (hour, minute, second) = clock(c)?;
    let mut stamp = IsoStamp {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
        t_separator,
        comma_fraction: false,
        fraction_digits: 0,
        offset_seconds: None,
        offset_with_colon: false,
    };
    if matches!(c.peek(), Some(b'.' | b',')) {
        stamp.comma_fraction = c.peek() == Some(b',');
        c.pos += 1;
        let (nanos, digits) = c.fraction()?;
        stamp.nanos = nanos;
        stamp.fraction_digits = digits;
    }
    match c.peek() {
        Some(b'Z' | b'z') => {
            c.pos += 1;
            stamp.offset_seconds = Some(0);
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let hours = c.two_digits(23)?;
            let mut minutes = 0;
            if c.eat(b':') {
                stamp.offset_with_colon = true;
                minutes = c.two_digits(59)?;
            } else if matches!(c.peek(), Some(b'0'..=b'9')) {
                minutes = c.two_digits(59)?;
            }
            let seconds = i32::from(hours) * 3_600 + i32::from(minutes) * 60;
            stamp.offset_seconds = Some(if sign == b'-' { -seconds } else { seconds });
        }
        _ => {}
    }
    Some(stamp)
}

/// An ISO 8601 timestamp, then host and tag (syslog, journal) or the message
/// (`dmesg --time-format=iso`, application logs).
fn iso_line(mut c: Cursor) -> Option<TextLine> {
    let stamp = iso_stamp(&mut c)?;
    if !c.at_end() && c.skip_blanks() == 0 {
        return None;
    }
    let mut line = TextLine::new(PrefixForm::Iso8601, "");
    line.time = stamp.time();
    // rsyslog and `journalctl -o short-iso` always write host and tag after
    // a zoned `T` timestamp; other shapes may be followed by the message.
    let rule = if stamp.t_separator && stamp.offset_seconds.is_some() && !stamp.is_dmesg_iso() {
        TagRule::Any
    } else {
        TagRule::KernelOrPid
    };
    if let Some((host, tag, after)) = host_and_tag(c, rule) {
        line.host = Some(host);
        line.tag = Some(tag);
        return Some(after_tag(line, after));
    }
    line.message = message_at(c);
    Some(line)
}

/// `journalctl -o short-unix`: `1709348645.123456 host kernel: msg`.
fn journal_unix(mut c: Cursor) -> Option<TextLine> {
    let seconds = c.number(1, 12)?;
    c.expect(b'.')?;
    let (nanos, _) = c.fraction()?;
    if c.skip_blanks() == 0 {
        return None;
    }
    let (host, tag, after) = host_and_tag(c, TagRule::KernelOrPid)?;
    let mut line = TextLine::new(PrefixForm::JournalUnix, "");
    line.time = seconds
        .checked_mul(1_000_000_000)
        .and_then(|whole| whole.checked_add(u64::from(nanos)))
        .map(|unix_nanos| LineTime::Instant { unix_nanos });
    line.host = Some(host);
    line.tag = Some(tag);
    Some(after_tag(line, after))
}

/// Lines whose prefix starts with a letter: BSD syslog, `dmesg -x`.
fn worded<'a>(start: Cursor<'a>, ctx: &TimeContext) -> Option<TextLine<'a>> {
    bsd_syslog(start, ctx)
        .or_else(|| journal_full(start))
        .or_else(|| dmesg_decoded(start))
}

/// `journalctl -o short-full`: `Sat 2026-12-05 19:49:07 CET host kernel: msg`
/// (weekday, date and time, zone abbreviation).
fn journal_full(mut c: Cursor) -> Option<TextLine> {
    c.name(MAX_NAME_BYTES)?;
    c.expect(b' ')?;
    let stamp = iso_stamp(&mut c)?;
    if stamp.t_separator || stamp.offset_seconds.is_some() {
        return None;
    }
    c.expect(b' ')?;
    let zone = c.token(MAX_NAME_BYTES)?;
    c.skip_blanks();
    let (host, tag, after) = host_and_tag(c, TagRule::Any)?;
    let mut line = TextLine::new(PrefixForm::JournalFull, "");
    line.time = match zone_offset(zone) {
        Some(offset_seconds) => IsoStamp {
            offset_seconds: Some(offset_seconds),
            ..stamp
        }
        .time(),
        // A zone abbreviation other than UTC (`CET`) names no offset for
        // sure (`IST` is three zones): a civil time.
        None => stamp.time(),
    };
    line.host = Some(host);
    line.tag = Some(tag);
    Some(after_tag(line, after))
}

/// The UTC offset of a zone written as `UTC`/`GMT`/`Z` or `+hh[[:]mm]`.
fn zone_offset(zone: &str) -> Option<i32> {
    if matches!(zone, "UTC" | "GMT" | "UT" | "Z") {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut c = Cursor::new(zone);
    c.pos = 1;
    let hours = c.two_digits(23)?;
    let minutes = if c.at_end() {
        0
    } else {
        c.eat(b':');
        c.two_digits(59)?
    };
    if !c.at_end() {
        return None;
    }
    Some(sign * (i32::from(hours) * 3_600 + i32::from(minutes) * 60))
}

/// `Mmm dd hh:mm:ss[.ffffff] host tag: msg` (RFC 3164, `journalctl` short and
/// short-precise). The host is always there; the tag may be missing.
fn bsd_syslog<'a>(mut c: Cursor<'a>, ctx: &TimeContext) -> Option<TextLine<'a>> {
    let month = month_name(&mut c)?;
    c.expect(b' ')?;
    let day = day_of_month(&mut c)?;
    c.expect(b' ')?;
    let (hour, minute, second) = clock(&mut c)?;
    let nanos = if c.eat(b'.') { c.fraction()?.0 } else { 0 };
    if !c.at_end() && c.skip_blanks() == 0 {
        return None;
    }
    let mut line = TextLine::new(PrefixForm::Syslog, "");
    line.time = month
        .and_then(|month| {
            CivilDateTime::new(
                ctx.year_of_month(month),
                month,
                day,
                hour,
                minute,
                second,
                nanos,
            )
        })
        .map(|date_time| LineTime::Civil {
            date_time,
            year_stated: false,
        });

    let mut after_host = c;
    let Some(first) = after_host.token(MAX_HOST_BYTES) else {
        line.message = message_at(c);
        return Some(line);
    };
    if let Some(tag) = tag_of(first) {
        // `Mar  2 03:04:05 kernel: msg`: a tag and no host.
        line.tag = Some(tag);
        return Some(after_tag(line, after_host));
    }
    line.host = Some(first);
    after_host.skip_blanks();
    let mut after_tag_token = after_host;
    match tag_token(&mut after_tag_token, TagRule::Any) {
        Some(tag) => {
            line.tag = Some(tag);
            Some(after_tag(line, after_tag_token))
        }
        None => {
            line.message = message_at(after_host);
            Some(line)
        }
    }
}

/// `dmesg -x`: `kern  :warn  : ` then a dmesg timestamp form or the message.
fn dmesg_decoded(mut c: Cursor) -> Option<TextLine> {
    let facility = c.name(8)?;
    let facility = FACILITIES.iter().position(|name| *name == facility)?;
    c.skip_spaces();
    c.expect(b':')?;
    let level = c.name(8)?;
    let level = LEVELS.iter().position(|name| *name == level)?;
    c.skip_spaces();
    c.expect(b':')?;
    if !c.at_end() {
        c.expect(b' ')?;
    }
    let priority = u16::try_from(facility * 8 + level).ok()?;
    let mut line = if c.peek() == Some(b'[') {
        bracketed(c, Journal::Excluded)
            .unwrap_or_else(|| TextLine::new(PrefixForm::Dmesg, message_at(c)))
    } else {
        TextLine::new(PrefixForm::Dmesg, message_at(c))
    };
    line.syslog_priority = Some(priority);
    Some(line)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagRule {
    /// Any `tag:` token.
    Any,
    /// Only `kernel:` or `name[pid]:`: where the prefix may be followed by
    /// kernel text such as `Hardware name: ...` or `usb 1-1: ...`.
    KernelOrPid,
}

/// `host tag:` at `c`: the host (a token not ending in `:`), the tag and the
/// position after the `:`.
fn host_and_tag(mut c: Cursor<'_>, rule: TagRule) -> Option<(&str, &str, Cursor<'_>)> {
    let host = c.token(MAX_HOST_BYTES)?;
    if host.ends_with(':') || c.skip_blanks() == 0 {
        return None;
    }
    let tag = tag_token(&mut c, rule)?;
    Some((host, tag, c))
}

/// A `tag:` token (followed by a blank or the end); the tag without `:`.
fn tag_token<'a>(c: &mut Cursor<'a>, rule: TagRule) -> Option<&'a str> {
    let mut probe = *c;
    let tag = tag_of(probe.token(MAX_TAG_BYTES)?)?;
    if rule == TagRule::KernelOrPid && tag != "kernel" && !has_pid(tag) {
        return None;
    }
    *c = probe;
    Some(tag)
}

/// The tag of a `tag:` token: not empty, one `:` at the end.
fn tag_of(token: &str) -> Option<&str> {
    token
        .strip_suffix(':')
        .filter(|tag| !tag.is_empty() && !tag.ends_with(':'))
}

/// `name[123]`.
fn has_pid(tag: &str) -> bool {
    tag.strip_suffix(']')
        .and_then(|inner| inner.rsplit_once('['))
        .is_some_and(|(name, pid)| {
            !name.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The message after `tag:`; after a `kernel` tag, the kernel's own
/// timestamp (and caller id) are taken off too.
fn after_tag<'a>(mut line: TextLine<'a>, mut c: Cursor<'a>) -> TextLine<'a> {
    c.skip_blanks();
    if line.tag == Some("kernel") && c.peek() == Some(b'[') {
        let mut stamp = c;
        if let Some(kernel_time_us) = dmesg_stamp(&mut stamp) {
            if line.kernel_time_us.is_none() {
                line.kernel_time_us = Some(kernel_time_us);
            }
            line.caller = caller_id(&mut stamp);
            c = stamp;
        }
    }
    line.message = message_at(c);
    line
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms", `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let month = i64::from(month);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a count of days since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const UTC_2026: TimeContext = TimeContext {
        default_year: 2026,
        default_offset_seconds: 0,
        reference_month: None,
    };
    /// Europe/Berlin in December (CET).
    const BERLIN_2026: TimeContext = TimeContext {
        default_year: 2026,
        default_offset_seconds: 3_600,
        reference_month: None,
    };

    fn split(line: &str) -> TextLine<'_> {
        split_prefix(line, &UTC_2026)
    }

    fn instant(seconds: u64, nanos: u64) -> Option<LineTime> {
        Some(LineTime::Instant {
            unix_nanos: seconds * 1_000_000_000 + nanos,
        })
    }

    fn civil(
        (year, month, day): (i32, u8, u8),
        (hour, minute, second): (u8, u8, u8),
        nanosecond: u32,
        year_stated: bool,
    ) -> Option<LineTime> {
        Some(LineTime::Civil {
            date_time: CivilDateTime::new(year, month, day, hour, minute, second, nanosecond)
                .unwrap(),
            year_stated,
        })
    }

    // ---- One real report as every tool writes it (tests/data/log-prefixes) ----

    const KMSG: &str = include_str!("../../../tests/data/log-prefixes/kmsg.txt");

    /// (file, text, form of every line, whether the lines carry the kernel's time)
    const RENDERINGS: &[(&str, &str, PrefixForm, bool)] = &[
        (
            "dmesg",
            include_str!("../../../tests/data/log-prefixes/dmesg.txt"),
            PrefixForm::Dmesg,
            true,
        ),
        (
            "dmesg -r",
            include_str!("../../../tests/data/log-prefixes/dmesg-r.txt"),
            PrefixForm::Dmesg,
            true,
        ),
        (
            "dmesg -x",
            include_str!("../../../tests/data/log-prefixes/dmesg-x.txt"),
            PrefixForm::Dmesg,
            true,
        ),
        (
            "dmesg -T",
            include_str!("../../../tests/data/log-prefixes/dmesg-T.txt"),
            PrefixForm::DmesgHuman,
            false,
        ),
        (
            "dmesg -xT",
            include_str!("../../../tests/data/log-prefixes/dmesg-xT.txt"),
            PrefixForm::DmesgHuman,
            false,
        ),
        (
            "dmesg iso",
            include_str!("../../../tests/data/log-prefixes/dmesg-iso.txt"),
            PrefixForm::Iso8601,
            false,
        ),
        (
            "dmesg reltime",
            include_str!("../../../tests/data/log-prefixes/dmesg-reltime.txt"),
            PrefixForm::DmesgHuman,
            false,
        ),
        (
            "dmesg delta",
            include_str!("../../../tests/data/log-prefixes/dmesg-delta.txt"),
            PrefixForm::Dmesg,
            false,
        ),
        (
            "journal short",
            include_str!("../../../tests/data/log-prefixes/journal-short-berlin.txt"),
            PrefixForm::Syslog,
            false,
        ),
        (
            "journal short-precise",
            include_str!("../../../tests/data/log-prefixes/journal-short-precise-berlin.txt"),
            PrefixForm::Syslog,
            false,
        ),
        (
            "journal short-iso",
            include_str!("../../../tests/data/log-prefixes/journal-short-iso-berlin.txt"),
            PrefixForm::Iso8601,
            false,
        ),
        (
            "journal short-iso-precise",
            include_str!("../../../tests/data/log-prefixes/journal-short-iso-precise-berlin.txt"),
            PrefixForm::Iso8601,
            false,
        ),
        (
            "journal short-full",
            include_str!("../../../tests/data/log-prefixes/journal-short-full-berlin.txt"),
            PrefixForm::JournalFull,
            false,
        ),
        (
            "journal short-full UTC",
            include_str!("../../../tests/data/log-prefixes/journal-short-full-utc.txt"),
            PrefixForm::JournalFull,
            false,
        ),
        (
            "journal short-monotonic",
            include_str!("../../../tests/data/log-prefixes/journal-short-monotonic.txt"),
            PrefixForm::JournalMonotonic,
            true,
        ),
        (
            "journal short-delta",
            include_str!("../../../tests/data/log-prefixes/journal-short-delta.txt"),
            PrefixForm::JournalMonotonic,
            true,
        ),
        (
            "journal short-unix",
            include_str!("../../../tests/data/log-prefixes/journal-short-unix.txt"),
            PrefixForm::JournalUnix,
            false,
        ),
        (
            "rsyslog traditional",
            include_str!("../../../tests/data/log-prefixes/rsyslog-traditional-berlin.txt"),
            PrefixForm::Syslog,
            false,
        ),
        (
            "rsyslog RFC 3339",
            include_str!("../../../tests/data/log-prefixes/rsyslog-rfc3339-berlin.txt"),
            PrefixForm::Iso8601,
            false,
        ),
        (
            "rsyslog RFC 5424",
            include_str!("../../../tests/data/log-prefixes/rsyslog-rfc5424-berlin.txt"),
            PrefixForm::Rfc5424,
            false,
        ),
    ];

    fn kmsg_lines() -> Vec<TextLine<'static>> {
        KMSG.lines().map(split).collect()
    }

    #[test]
    fn kmsg_records_of_a_real_report() {
        let lines = kmsg_lines();
        assert_eq!(lines.len(), 79);
        assert!(lines.iter().all(|line| line.form == PrefixForm::Kmsg));
        assert_eq!(
            lines[0].message,
            "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
        );
        assert_eq!(lines[0].kernel_time_us, Some(45_021_273_752));
        assert_eq!(lines[0].syslog_priority, Some(4));
        assert_eq!(lines[0].from_kernel(), Some(true));
        // ` <TASK>`: the kernel's indentation is not part of the message.
        assert_eq!(lines[3].message, "<TASK>");
        // A task-table row starts with `[`: it is the message, whole.
        assert_eq!(
            lines[76].message,
            "[  28526]     0 28526    16947    14396    12736     1660         0   172032        0             0 python3"
        );
        assert_eq!(lines[78].syslog_priority, Some(3));
        assert!(lines[78]
            .message
            .starts_with("Memory cgroup out of memory: Killed process 28526 (python3)"));
    }

    #[test]
    fn every_tool_gives_the_same_messages() {
        let expected = kmsg_lines();
        for (name, text, form, kernel_time) in RENDERINGS {
            let ctx = if name.contains("UTC") || name.starts_with("dmesg") {
                UTC_2026
            } else {
                BERLIN_2026
            };
            let lines: Vec<_> = text.lines().map(|line| split_prefix(line, &ctx)).collect();
            assert!(
                lines.len() >= expected.len(),
                "{name}: {} lines",
                lines.len()
            );
            for (index, (line, want)) in lines.iter().zip(&expected).enumerate() {
                assert_eq!(line.form, *form, "{name} line {index}: {line:?}");
                assert_eq!(line.message, want.message, "{name} line {index}");
                if *kernel_time {
                    assert_eq!(
                        line.kernel_time_us, want.kernel_time_us,
                        "{name} line {index}"
                    );
                } else {
                    assert_eq!(line.kernel_time_us, None, "{name} line {index}");
                }
                if name.starts_with("journal") || name.starts_with("rsyslog") {
                    assert_eq!(line.host, Some("vm"), "{name} line {index}");
                    assert_eq!(line.tag, Some("kernel"), "{name} line {index}");
                    assert_eq!(line.from_kernel(), Some(true), "{name} line {index}");
                } else {
                    assert_eq!((line.host, line.tag), (None, None), "{name} line {index}");
                }
                let has_time = !matches!(*form, PrefixForm::Dmesg | PrefixForm::JournalMonotonic)
                    && *name != "dmesg reltime";
                assert_eq!(line.time.is_some(), has_time, "{name} line {index}");
            }
        }
    }

    #[test]
    fn priorities_of_dmesg_r_and_x_are_the_records() {
        let expected = kmsg_lines();
        for text in [RENDERINGS[1].1, RENDERINGS[2].1, RENDERINGS[4].1] {
            for (line, want) in text.lines().map(split).zip(&expected) {
                assert_eq!(line.syslog_priority, want.syslog_priority, "{line:?}");
            }
        }
    }

    /// The tools computed the civil forms; the parser's arithmetic must agree
    /// with them.
    #[test]
    fn times_printed_by_the_tools_agree() {
        fn times(index: usize, ctx: &TimeContext) -> Vec<u64> {
            RENDERINGS[index]
                .1
                .lines()
                .map(|line| {
                    let line = split_prefix(line, ctx);
                    line.time
                        .expect("a time")
                        .unix_nanos(ctx)
                        .expect("after 1970")
                })
                .collect()
        }
        let whole_seconds = |nanos: &u64| nanos - nanos % 1_000_000_000;
        let by_name = |name: &str| RENDERINGS.iter().position(|r| r.0 == name).unwrap();

        // dmesg: `-T` (civil, UTC here) and `--time-format=iso` (exact).
        let iso = times(by_name("dmesg iso"), &UTC_2026);
        assert_eq!(iso[0], 1_796_496_547_273_752_000); // 2026-12-05T18:49:07,273752+00:00
        let ctime: Vec<_> = iso.iter().map(whole_seconds).collect();
        assert_eq!(times(by_name("dmesg -T"), &UTC_2026), ctime);
        assert_eq!(times(by_name("dmesg -xT"), &UTC_2026), ctime);

        // journal: Unix time, ISO with +0100, civil Berlin time, `CET` and `UTC`.
        let unix = times(by_name("journal short-unix"), &UTC_2026);
        assert_eq!(unix[0], 1_796_496_547_829_931_000);
        assert_eq!(times(by_name("journal short-iso-precise"), &UTC_2026), unix);
        assert_eq!(times(by_name("journal short-precise"), &BERLIN_2026), unix);
        let seconds: Vec<_> = unix.iter().map(whole_seconds).collect();
        assert_eq!(times(by_name("journal short-iso"), &UTC_2026), seconds);
        assert_eq!(times(by_name("journal short"), &BERLIN_2026), seconds);
        assert_eq!(times(by_name("journal short-full"), &BERLIN_2026), seconds);
        assert_eq!(
            times(by_name("journal short-full UTC"), &BERLIN_2026),
            seconds
        );

        // rsyslog: RFC 3339 and RFC 5424 exact, traditional civil.
        let rfc3339 = times(by_name("rsyslog RFC 3339"), &UTC_2026);
        assert_eq!(rfc3339[0], 1_796_496_575_674_865_000); // 2026-12-05T19:49:35.674865+01:00
        assert_eq!(times(by_name("rsyslog RFC 5424"), &UTC_2026), rfc3339);
        let seconds: Vec<_> = rfc3339.iter().map(whole_seconds).collect();
        assert_eq!(times(by_name("rsyslog traditional"), &BERLIN_2026), seconds);
    }

    #[test]
    fn zone_stated_or_not() {
        let line = split_prefix("Sat 2026-12-05 19:49:07 CET vm kernel: x", &BERLIN_2026);
        assert_eq!(line.time, civil((2026, 12, 5), (19, 49, 7), 0, true));
        assert!(!line.time.unwrap().zone_stated());
        let line = split("Sat 2026-12-05 18:49:07 UTC vm kernel: x");
        assert_eq!(line.time, instant(1_796_496_547, 0));
        assert!(line.time.unwrap().zone_stated());
        let line = split("Sat 2026-12-05 21:49:07 +03 vm kernel: x");
        assert_eq!(line.time, instant(1_796_496_547, 0));
    }

    #[test]
    fn rsyslog_folded_java_trace() {
        let text = RENDERINGS[RENDERINGS.len() - 3].1;
        let folded = split_prefix(text.lines().last().unwrap(), &BERLIN_2026);
        assert_eq!(folded.rsyslog_lines().count(), 2);
        assert_eq!(folded.host, Some("vm"));
        assert_eq!(folded.tag, Some("java[29843]"));
        assert_eq!(folded.from_kernel(), Some(false));
        let lines: Vec<_> = unfold_rsyslog(folded.message).collect();
        assert_eq!(
            lines,
            [
                "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
                "\tat Oom.main(Oom.java:2)"
            ]
        );
        assert!(matches!(lines[0], Cow::Borrowed(_)));

        let rfc5424 = RENDERINGS[RENDERINGS.len() - 1].1.lines().last().unwrap();
        let folded = split(rfc5424);
        assert_eq!(
            (folded.tag, folded.syslog_priority),
            (Some("java"), Some(11))
        );
        assert_eq!(unfold_rsyslog(folded.message).count(), 2);
    }

    // ---- Lines without a prefix ----

    #[test]
    fn no_prefix() {
        for text in [
            "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Memory cgroup out of memory: Killed process 11976 (python3) total-vm:67784kB, anon-rss:50816kB",
            // task-table rows and headers start with `[` but are no timestamp
            "[  11976]     0 11976    16946    13989    12704     1285         0   159744        0             0 python3",
            "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
            "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
            "[24386]     0 24386     1870      210       9       3        0             0 stress",
            // call trace entries of old kernels
            "[<ffffffff8172017e>] dump_stack+0x4e/0x7a",
            "<TASK>",
            "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.5.1 06/16/2021",
            "Call Trace:",
            "CPU: 1 UID: 0 PID: 11976 Comm: python3 Not tainted 6.18.44-fc-v669 #1 PREEMPT(none)",
            "RIP: 0033:0x7f0beff8c0ba",
            "active_anon:7355653 inactive_anon:660960 isolated_anon:0",
            "Node 0 DMA32 free:61020kB min:59340kB",
            "Mar 2024 was a long month",
            "-- Logs begin at Sat 2020-04-04 12:49:26 +09, end at Thu 2020-06-04 21:29:13 +09. --",
            "-- Boot 7f3a8c1e2b9d4c5e8f6a7b1c2d3e4f50 --",
            "1,5 million pages",
            "",
        ] {
            let line = split(text);
            assert_eq!(line, TextLine::new(PrefixForm::None, text), "{text:?}");
            assert_eq!(line.from_kernel(), None);
        }
    }

    #[test]
    fn pasted_whitespace_and_line_ends() {
        for (text, message) in [
            ("   python3 invoked oom-killer: x\r\n", "python3 invoked oom-killer: x"),
            ("\t\t[  11976]     0 11976 python3\r", "[  11976]     0 11976 python3"),
            ("\u{feff}Call Trace:\n", "Call Trace:"),
            // a paste that wrapped a Mem-Info line (https://github.com/dCache/dcache/issues/3787)
            (
                "                                      active_file:13454130 inactive_file:696529 isolated_file:0",
                "active_file:13454130 inactive_file:696529 isolated_file:0",
            ),
            (" \t \r\n", ""),
        ] {
            assert_eq!(split(text), TextLine::new(PrefixForm::None, message), "{text:?}");
        }
        // dmesg indented in a mail
        // (https://lore.kernel.org/all/ZcWOh9u3uqZjNFMa@chrisdown.name/).
        let line = split("     [41368.535735] Memory cgroup out of memory: Killed process 128824 (rsync) total-vm:14008kB, anon-rss:256kB, file-rss:5504kB, shmem-rss:0kB, UID:1000 pgtables:64kB oom_score_adj:200");
        assert_eq!(line.form, PrefixForm::Dmesg);
        assert_eq!(line.kernel_time_us, Some(41_368_535_735));
        assert!(line.message.starts_with(
            "Memory cgroup out of memory: Killed process 128824 (rsync) total-vm:14008kB"
        ));
    }

    // ---- dmesg ----

    #[test]
    fn dmesg_timestamps() {
        let line = split("[    0.000000] Linux version 6.18.44-fc-v669");
        assert_eq!(line.form, PrefixForm::Dmesg);
        assert_eq!(line.kernel_time_us, Some(0));
        assert_eq!(line.message, "Linux version 6.18.44-fc-v669");

        // https://github.com/arriven/db1000n/issues/555
        let line = split("[ 3449.257940]  <TASK>");
        assert_eq!(
            (line.kernel_time_us, line.message),
            (Some(3_449_257_940), "<TASK>")
        );
        // https://github.com/ColinIanKing/stress-ng/issues/177: a task row after the stamp
        let line = split("[44178.537350] [   1807]  1000  1807     4908        0    98304      117          1000 stress-ng");
        assert_eq!(line.kernel_time_us, Some(44_178_537_350));
        assert_eq!(
            line.message,
            "[   1807]  1000  1807     4908        0    98304      117          1000 stress-ng"
        );
        // Kernel text of the shape `word word: ...` after a dmesg stamp is no
        // journal host and tag.
        for message in [
            "Hardware name: BCM2711",
            "usb 1-1: new high-speed USB device",
            "Call Trace:",
        ] {
            let text = format!("[  500.626670] {message}");
            let line = split(&text);
            assert_eq!(
                (line.form, line.host, line.message),
                (PrefixForm::Dmesg, None, message)
            );
        }
        // Fractions of other lengths than six digits.
        assert_eq!(split("[121969.59] x").kernel_time_us, Some(121_969_590_000));
        assert_eq!(split("[1.123456789] x").kernel_time_us, Some(1_123_456));
        // Too many digits, no fraction, no number: not a stamp.
        for text in ["[1234567890123.5] x", "[12345] x", "[.5] x", "[ 1.5 x"] {
            assert_eq!(split(text).form, PrefixForm::None, "{text}");
        }
    }

    #[test]
    fn dmesg_caller_id() {
        // CONFIG_PRINTK_CALLER
        // (https://lore.kernel.org/linux-mm/201902010336.x113a4EO027170@www262.sakura.ne.jp/)
        let line = split("[   37.052923][ T9185] a.out invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0");
        assert_eq!((line.form, line.caller), (PrefixForm::Dmesg, Some("T9185")));
        assert_eq!(line.kernel_time_us, Some(37_052_923));
        assert_eq!(
            line.message,
            "a.out invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
        );
        // dmesg separates it with a space; a CPU instead of a task (format of
        // printk.c's `info_print_prefix`, made-up messages).
        let line = split("[ 1234.567890] [ T4321] x");
        assert_eq!((line.caller, line.message), (Some("T4321"), "x"));
        let line = split("[ 1234.567890][    C1] x");
        assert_eq!((line.caller, line.message), (Some("C1"), "x"));
        // A task row is not a caller id.
        let line = split("[ 1234.567890] [  11976]     0 11976 python3");
        assert_eq!(
            (line.caller, line.message),
            (None, "[  11976]     0 11976 python3")
        );
    }

    #[test]
    fn printk_dropped_note() {
        // https://lore.kernel.org/linux-mm/201602162011.ECG52697.VOLJFtOQHFMSFO@I-love.SAKURA.ne.jp/
        let line = split("** 3 printk messages dropped ** [  206.416481] Out of memory (oom_kill_allocating_task): Kill process 10595 (a.out) score 0 or sacrifice child");
        assert_eq!(line.printk_dropped, Some(3));
        assert_eq!(
            (line.form, line.kernel_time_us),
            (PrefixForm::Dmesg, Some(206_416_481))
        );
        assert_eq!(
            line.message,
            "Out of memory (oom_kill_allocating_task): Kill process 10595 (a.out) score 0 or sacrifice child"
        );
        // On a line of its own (later kernels).
        let line = split("** 12 printk messages dropped **");
        assert_eq!(
            (line.form, line.printk_dropped, line.message),
            (PrefixForm::None, Some(12), "")
        );
        assert_eq!(
            split("** x printk messages dropped ** y").printk_dropped,
            None
        );
    }

    #[test]
    fn dmesg_human_forms() {
        // https://github.com/rsyslog/rsyslog/issues/3314
        let line = split("[Wed Nov 21 10:42:11 2018] rsyslogd invoked oom-killer: gfp_mask=0x201da, order=0, oom_score_adj=0");
        assert_eq!(line.form, PrefixForm::DmesgHuman);
        assert_eq!(line.time, civil((2018, 11, 21), (10, 42, 11), 0, true));
        assert_eq!(
            line.time.unwrap().unix_nanos(&UTC_2026),
            Some(1_542_796_931_000_000_000)
        );
        assert_eq!(
            line.message,
            "rsyslogd invoked oom-killer: gfp_mask=0x201da, order=0, oom_score_adj=0"
        );
        // This machine's `dmesg -H` (reltime): the minute line and a delta line.
        let line = split("[Dec 5 18:27] python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0");
        assert_eq!((line.form, line.time), (PrefixForm::DmesgHuman, None));
        assert!(line.message.starts_with("python3 invoked"));
        let line = split("[  +5.894840] python3 invoked oom-killer");
        assert_eq!(
            (line.form, line.message),
            (PrefixForm::DmesgHuman, "python3 invoked oom-killer")
        );
        // `dmesg -T` in another locale: a prefix without a time.
        let line = split("[сб мар  2 03:04:05 2024] x");
        assert_eq!(
            (line.form, line.time, line.message),
            (PrefixForm::DmesgHuman, None, "x")
        );
        // A date that does not exist: the prefix, no time.
        let line = split("[Fri Feb 30 03:04:05 2024] x");
        assert_eq!(
            (line.form, line.time, line.message),
            (PrefixForm::DmesgHuman, None, "x")
        );
    }

    #[test]
    fn dmesg_raw_and_decoded() {
        // `dmesg -r` and `dmesg -x` without timestamps (`-t`).
        let line = split("<4>python3 invoked oom-killer");
        assert_eq!(
            (line.form, line.syslog_priority),
            (PrefixForm::Dmesg, Some(4))
        );
        assert_eq!(line.message, "python3 invoked oom-killer");
        let line = split("<6>[  11976]     0 11976 python3");
        assert_eq!((line.form, line.kernel_time_us), (PrefixForm::Dmesg, None));
        assert_eq!(line.message, "[  11976]     0 11976 python3");
        let line = split("kern  :warn  : python3 invoked oom-killer");
        assert_eq!(
            (line.form, line.syslog_priority),
            (PrefixForm::Dmesg, Some(4))
        );
        assert_eq!(line.message, "python3 invoked oom-killer");
        let line = split("user  :debug : [43638.277104] oomscope-gap-test-20060 flood 281");
        assert_eq!(line.syslog_priority, Some(15));
        assert_eq!(line.kernel_time_us, Some(43_638_277_104));
        // Not a facility and level.
        assert_eq!(split("kernel :warn  : x").form, PrefixForm::None);
        assert_eq!(split("kern  :loud  : x").form, PrefixForm::None);
    }

    #[test]
    fn kmsg_caller_and_extensions() {
        let line =
            split("6,1234,5678901,-,caller=T123;Memory cgroup out of memory: Killed process 1 (x)");
        assert_eq!(line.form, PrefixForm::Kmsg);
        assert_eq!(
            (line.caller, line.kernel_time_us),
            (Some("T123"), Some(5_678_901))
        );
        assert_eq!(
            line.message,
            "Memory cgroup out of memory: Killed process 1 (x)"
        );
        assert_eq!(split("12,7,99,c;continued").message, "continued");
        // Only a task or CPU is a caller.
        assert_eq!(split("6,1,2,-,caller=x 1;m").caller, None);
        assert_eq!(split("6,1,2,-,caller=C12;m").caller, Some("C12"));
        for text in [
            "6,1234,5678901;x",
            "6,1234,5678901,x;y",
            "6,1234,x,-;y",
            "6,1,2,-",
        ] {
            assert_eq!(split(text).form, PrefixForm::None, "{text}");
        }
        let long_extension = format!("6,1,2,-,{};x", "a".repeat(MAX_KMSG_EXTENSION_BYTES));
        assert_eq!(split(&long_extension).form, PrefixForm::None);
    }

    // ---- syslog ----

    #[test]
    fn bsd_syslog_with_kernel_timestamp() {
        // https://github.com/docker/for-linux/issues/1001
        let line = split("May 15 23:09:30 ubuntu-s-1vcpu-2gb-ams3-01 kernel: [  518.050606] Out of memory: Killed process 15784 (python3) total-vm:11964kB, anon-rss:4288kB, file-rss:3028kB, shmem-rss:0kB");
        assert_eq!(line.form, PrefixForm::Syslog);
        assert_eq!(line.host, Some("ubuntu-s-1vcpu-2gb-ams3-01"));
        assert_eq!(line.tag, Some("kernel"));
        assert_eq!(line.kernel_time_us, Some(518_050_606));
        assert_eq!(line.time, civil((2026, 5, 15), (23, 9, 30), 0, false));
        assert!(line
            .message
            .starts_with("Out of memory: Killed process 15784 (python3)"));
        // https://github.com/cPanelSSP/SSP/issues/76: a space-padded day
        let line = split("Mar  2 17:35:10 server1 kernel: [2858609.598568] Killed process 11726, UID 498, (mysqld) total-vm:7823732kB, anon-rss:2539268kB, file-rss:768kB");
        assert_eq!(line.time, civil((2026, 3, 2), (17, 35, 10), 0, false));
        assert_eq!(line.kernel_time_us, Some(2_858_609_598_568));
        assert_eq!(line.message, "Killed process 11726, UID 498, (mysqld) total-vm:7823732kB, anon-rss:2539268kB, file-rss:768kB");
    }

    #[test]
    fn bsd_syslog_task_rows_and_old_traces_are_messages() {
        // https://github.com/systemd/systemd/issues/6966
        let line = split("Aug 18 03:19:11 169 kernel: [ 7747]     0  7748  3226957  2875051    5692        0             0 python");
        assert_eq!(
            (line.host, line.tag, line.kernel_time_us),
            (Some("169"), Some("kernel"), None)
        );
        assert_eq!(
            line.message,
            "[ 7747]     0  7748  3226957  2875051    5692        0             0 python"
        );
        // https://github.com/moby/moby/issues/38352
        let line = split(
            "Dec 11 10:48:09 fkhan-test-kernelv3 kernel: [<ffffffffa21135d4>] dump_stack+0x19/0x1b",
        );
        assert_eq!(
            (line.kernel_time_us, line.message),
            (None, "[<ffffffffa21135d4>] dump_stack+0x19/0x1b")
        );
        let line = split("Dec 11 10:48:09 fkhan-test-kernelv3 kernel: thrash invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0");
        assert_eq!(
            line.message,
            "thrash invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0"
        );
    }

    #[test]
    fn journal_short_and_other_tags() {
        // https://github.com/coroot/coroot/issues/330 (host name masked by the poster)
        let line = split("Sep 13 13:13:42 n4.c1.*** kernel: mailpit invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=999");
        assert_eq!((line.host, line.tag), (Some("n4.c1.***"), Some("kernel")));
        assert_eq!(line.message, "mailpit invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=999");
        // https://github.com/rfjakob/earlyoom/issues/243
        let line = split("Feb 19 11:29:08 erik3 earlyoom[15368]: Killing process 'tail' with signal 15, pid: 24059, badness: 997, VmRSS: 4278 MiB");
        assert_eq!(
            (line.host, line.tag),
            (Some("erik3"), Some("earlyoom[15368]"))
        );
        assert_eq!(line.from_kernel(), Some(false));
        assert_eq!(
            line.message,
            "Killing process 'tail' with signal 15, pid: 24059, badness: 997, VmRSS: 4278 MiB"
        );
        // https://github.com/rfjakob/earlyoom/issues/203: journalctl in a Russian locale
        let line = split("апр 04 21:53:13 PC systemd[1]: Started Early OOM Daemon.");
        assert_eq!((line.form, line.time), (PrefixForm::Syslog, None));
        assert_eq!((line.host, line.tag), (Some("PC"), Some("systemd[1]")));
        assert_eq!(line.message, "Started Early OOM Daemon.");
        // https://github.com/leptonai/gpud/pull/70: short-precise (host elided by the poster)
        let line = split("Aug 30 06:58:55.050705 ... kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)");
        assert_eq!(
            line.time,
            civil((2026, 8, 30), (6, 58, 55), 50_705_000, false)
        );
        assert_eq!((line.host, line.tag), (Some("..."), Some("kernel")));
        assert_eq!(
            line.message,
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)"
        );
        // A program without pid (RHEL 7), a line without tag, a tag without host.
        let line = split("Sep 22 16:22:29 mgr9 systemd-logind: Removed session 185.");
        assert_eq!(
            (line.tag, line.message),
            (Some("systemd-logind"), "Removed session 185.")
        );
        let line = split("Mar  2 03:04:05 host last message repeated 3 times");
        assert_eq!(
            (line.host, line.tag, line.message),
            (Some("host"), None, "last message repeated 3 times")
        );
        let line = split("Mar  2 03:04:05 kernel: x");
        assert_eq!(
            (line.host, line.tag, line.message),
            (None, Some("kernel"), "x")
        );
        // With the RFC 3164 priority, as sent on the wire.
        let line = split("<4>Mar  2 03:04:05 host kernel: x");
        assert_eq!(
            (line.form, line.syslog_priority, line.message),
            (PrefixForm::Syslog, Some(4), "x")
        );
    }

    #[test]
    fn bsd_syslog_invalid_times() {
        // Feb 30: the prefix, no time.
        let line = split("Feb 30 03:04:05 host kernel: x");
        assert_eq!(
            (line.form, line.time, line.message),
            (PrefixForm::Syslog, None, "x")
        );
        // Feb 29 exists in the context's year or not.
        assert!(
            split_prefix("Feb 29 03:04:05 host kernel: x", &TimeContext::utc(2024))
                .time
                .is_some()
        );
        assert!(
            split_prefix("Feb 29 03:04:05 host kernel: x", &TimeContext::utc(2023))
                .time
                .is_none()
        );
        // Hour 25, minute 60, day 32: not a prefix.
        for text in [
            "Mar  2 25:04:05 host kernel: x",
            "Mar  2 03:60:05 host kernel: x",
            "Mar 32 03:04:05 host kernel: x",
            "Mar  0 03:04:05 host kernel: x",
            "Mar  2 3:04:05 host kernel: x",
        ] {
            assert_eq!(split(text).form, PrefixForm::None, "{text}");
        }
    }

    #[test]
    fn year_of_a_year_less_line() {
        // A file last written on 2025-01-02 at 00:30 in UTC+1 (2025-01-01T23:30Z).
        let ctx = TimeContext::from_reference(1_735_774_200, 3_600);
        assert_eq!((ctx.default_year, ctx.reference_month), (2025, Some(1)));
        let december = split_prefix("Dec 31 23:59:59 host kernel: x", &ctx);
        assert_eq!(december.time, civil((2024, 12, 31), (23, 59, 59), 0, false));
        // Local time at UTC+1: 2024-12-31T22:59:59Z.
        assert_eq!(
            december.time.unwrap().unix_nanos(&ctx),
            Some(1_735_685_999 * 1_000_000_000)
        );
        let january = split_prefix("Jan  2 00:10:00 host kernel: x", &ctx);
        assert_eq!(january.time, civil((2025, 1, 2), (0, 10, 0), 0, false));
    }

    // ---- ISO 8601 / RFC 3339 ----

    #[test]
    fn iso_timestamps() {
        let cases: [(&str, Option<LineTime>); 8] = [
            (
                "2024-03-02T03:04:05+0000 host kernel: msg",
                instant(1_709_348_645, 0),
            ),
            (
                "2024-03-02T03:04:05.123456+01:00 host kernel: msg",
                instant(1_709_345_045, 123_456_000),
            ),
            (
                "2024-03-02T03:04:05,123456Z host kernel: msg",
                instant(1_709_348_645, 123_456_000),
            ),
            (
                "2024-03-02T03:04:05.123456789-05:30 host kernel: msg",
                instant(1_709_348_645 + 19_800, 123_456_789),
            ),
            (
                "2024-03-02t03:04:05z host kernel: msg",
                instant(1_709_348_645, 0),
            ),
            (
                "2024-03-02T03:04:05+01 host kernel: msg",
                instant(1_709_345_045, 0),
            ),
            (
                "2024-03-02 03:04:05,123 host kernel: msg",
                civil((2024, 3, 2), (3, 4, 5), 123_000_000, true),
            ),
            (
                "2024-03-02 03:04:05.123 host kernel: msg",
                civil((2024, 3, 2), (3, 4, 5), 123_000_000, true),
            ),
        ];
        for (text, time) in cases {
            let line = split(text);
            assert_eq!(line.form, PrefixForm::Iso8601, "{text}");
            assert_eq!(line.time, time, "{text}");
            assert_eq!(
                (line.host, line.tag, line.message),
                (Some("host"), Some("kernel"), "msg"),
                "{text}"
            );
        }
        // No host and tag (`dmesg --time-format=iso`, application logs).
        let line = split("2024-03-02 03:04:05,123 INFO [main] starting");
        assert_eq!(
            (line.host, line.tag, line.message),
            (None, None, "INFO [main] starting")
        );
        let line = split("2024-03-02T03:04:05Z");
        assert_eq!((line.form, line.message), (PrefixForm::Iso8601, ""));
        // A date that does not exist: the prefix, no time; a bad hour or
        // offset: not a prefix.
        let line = split("2024-02-30T03:04:05Z host kernel: msg");
        assert_eq!(
            (line.form, line.time, line.message),
            (PrefixForm::Iso8601, None, "msg")
        );
        for text in [
            "2024-03-02T25:04:05Z x",
            "2024-13-02T03:04:05Z x",
            "2024-03-02T03:04:05+24:00 x",
            "2024-03-02T03:04:05Zx",
            "2024-03-02T03:04:05. x",
            "2024-03-02X03:04:05 x",
            "24-03-02T03:04:05Z x",
        ] {
            assert_eq!(split(text).form, PrefixForm::None, "{text}");
        }
        // Before 1970 is not a Unix time here.
        assert_eq!(split("1969-12-31T23:59:59Z x").time, None);
        assert_eq!(split("1970-01-01T00:00:00Z x").time, instant(0, 0));
    }

    #[test]
    fn dmesg_iso_kernel_text_is_no_host_and_tag() {
        // `dmesg --time-format=iso` is followed by the message: kernel text
        // shaped `word word: ...` stays whole. (Prefix as this machine's
        // dmesg writes it; the messages are real kernel lines.)
        for message in [
            "Call Trace:",
            "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.5.1 06/16/2021",
            "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
            "oom_reaper: reaped process 454 (dbus-daemon), now anon-rss:0kB, file-rss:64kB, shmem-rss:0kB",
        ] {
            let text = format!("2026-12-05T18:49:07,273766+00:00 {message}");
            let line = split(&text);
            assert_eq!((line.form, line.host, line.tag), (PrefixForm::Iso8601, None, None), "{text}");
            assert_eq!(line.message, message);
        }
    }

    #[test]
    fn rfc5424() {
        let line = split("<4>1 2024-03-02T03:04:05.123456+00:00 host kernel - - - msg");
        assert_eq!(line.form, PrefixForm::Rfc5424);
        assert_eq!(line.time, instant(1_709_348_645, 123_456_000));
        assert_eq!(
            (line.host, line.tag, line.syslog_priority),
            (Some("host"), Some("kernel"), Some(4))
        );
        assert_eq!(line.message, "msg");

        let line = split(
            r#"<165>1 2024-03-02T03:04:05Z host kernel 42 ID47 [exampleSDID@32473 iut="3" eventSource="Ap]p\"x\]"][b@1 c="d"] [  518.050606] Out of memory"#,
        );
        assert_eq!(
            (line.syslog_priority, line.kernel_time_us),
            (Some(165), Some(518_050_606))
        );
        assert_eq!(line.message, "Out of memory");

        // Nil values, a BOM before the message, no message.
        let line = split("<14>1 - - - - - - \u{feff}hello");
        assert_eq!(
            (line.time, line.host, line.tag, line.message),
            (None, None, None, "hello")
        );
        let text = "<14>1 - h a p m";
        let line = split(text);
        assert_eq!(line.message, "");
        // The empty message is the end of the line, as every message is.
        assert_eq!(line.message.as_ptr(), text[text.len()..].as_ptr());
        // Malformed structured data: the rest is the message.
        let line = split("<14>1 - h a p m [unclosed x");
        assert_eq!(
            (line.form, line.message),
            (PrefixForm::Rfc5424, "[unclosed x")
        );
        // PRI over 191 or version 0: not RFC 5424 (`dmesg -r` allows more).
        assert_eq!(split("<192>1 - h a p m - x").form, PrefixForm::Dmesg);
        assert_eq!(split("<14>0 - h a p m - x").form, PrefixForm::Dmesg);
    }

    #[test]
    fn journal_monotonic_needs_kernel_or_pid_tag() {
        let line = split("[12345.678901] myhost java[123]: msg");
        assert_eq!(line.form, PrefixForm::JournalMonotonic);
        assert_eq!(
            (line.host, line.tag, line.message),
            (Some("myhost"), Some("java[123]"), "msg")
        );
        let line = split("[12345.678901] myhost sshd: msg");
        assert_eq!(
            (line.form, line.message),
            (PrefixForm::Dmesg, "myhost sshd: msg")
        );
        let line = split("[12345.678901] systemd[1]: Started foo");
        assert_eq!(
            (line.form, line.message),
            (PrefixForm::Dmesg, "systemd[1]: Started foo")
        );
        // short-unix likewise.
        let line = split("1709348645.5 host kernel: x");
        assert_eq!(
            (line.form, line.time),
            (PrefixForm::JournalUnix, instant(1_709_348_645, 500_000_000))
        );
        assert_eq!(split("1709348645.5 host said: x").form, PrefixForm::None);
    }

    // ---- rsyslog folding ----

    #[test]
    fn rsyslog_unfolding() {
        // Mem-Info of a 3.10 kernel folded by rsyslog, its syslog prefix cut
        // off by the poster (test data of
        // https://github.com/CarstenGrohmann/OOMAnalyser/blob/b35dd5fb99e09294088c4d1556f22ac8bf99d462/OOMAnalyser.py).
        let message = "active_anon:7355653 inactive_anon:660960 isolated_anon:0#012 active_file:1263 inactive_file:1167 isolated_file:32#012 unevictable:0 dirty:4 writeback:0 unstable:0#012 slab_reclaimable:27412 slab_unreclaimable:13708#012 mapped:4818 shmem:87896 pagetables:25222 bounce:0#012 free:39513 free_pcp:2958 free_cma:0";
        let line = split(message);
        assert_eq!((line.form, line.message), (PrefixForm::None, message));
        let lines: Vec<_> = line.rsyslog_lines().collect();
        assert_eq!(
            lines,
            [
                "active_anon:7355653 inactive_anon:660960 isolated_anon:0",
                " active_file:1263 inactive_file:1167 isolated_file:32",
                " unevictable:0 dirty:4 writeback:0 unstable:0",
                " slab_reclaimable:27412 slab_unreclaimable:13708",
                " mapped:4818 shmem:87896 pagetables:25222 bounce:0",
                " free:39513 free_pcp:2958 free_cma:0",
            ]
        );
        assert!(lines.iter().all(|line| matches!(line, Cow::Borrowed(_))));

        // Not escapes: `#` before a printable character's code, short codes.
        for text in ["issue #123", "#01", "#", "#0", "#8a1", "ends with #01"] {
            let lines: Vec<_> = unfold_rsyslog(text).collect();
            assert_eq!(lines, [text]);
            assert!(matches!(lines[0], Cow::Borrowed(_)));
        }
        // Other control characters; a fold at the ends; `#` kept.
        let lines: Vec<_> = unfold_rsyslog("#012a#011b#033[0m#177#012").collect();
        assert_eq!(lines, ["", "a\tb\u{1b}[0m\u{7f}", ""]);
        let lines: Vec<_> = unfold_rsyslog("##012#0122").collect();
        assert_eq!(lines, ["#", "", "2"]);
        let lines: Vec<_> = unfold_rsyslog("é#011ü").collect();
        assert_eq!(lines, ["é\tü"]);
    }

    // ---- bounds ----

    /// Lines of 10 MB: each is looked at once (a quadratic parser would not
    /// finish); nothing panics.
    #[test]
    fn ten_megabyte_lines() {
        let size = 10 * 1024 * 1024;
        let fill = |head: &str, byte: char| {
            let mut line = String::with_capacity(size + head.len());
            line.push_str(head);
            line.extend(std::iter::repeat_n(byte, size));
            line
        };
        for (line, form) in [
            (fill("", ' '), PrefixForm::None),
            (fill("", '\r'), PrefixForm::None),
            (fill("[", '1'), PrefixForm::None),
            (fill("[", ' '), PrefixForm::None),
            (fill("[12.5] ", 'x'), PrefixForm::Dmesg),
            (fill("<4>", '['), PrefixForm::Dmesg),
            (fill("<4>1 - h a p m [", 'x'), PrefixForm::Rfc5424),
            (fill("<4>1 - h a p m [x a=\"", '\\'), PrefixForm::Rfc5424),
            (fill("Mar  2 03:04:05 ", 'h'), PrefixForm::Syslog),
            (fill("Mar  2 03:04:05 h ", 't'), PrefixForm::Syslog),
            (fill("2024-03-02T03:04:05Z ", 'a'), PrefixForm::Iso8601),
            (fill("2024-03-02T03:04:05.", '1'), PrefixForm::None),
            (fill("6,1,2,-,", 'a'), PrefixForm::None),
            (fill("", 'M'), PrefixForm::None),
            (fill("", 'é'), PrefixForm::None),
        ] {
            let parsed = split(&line);
            assert_eq!(parsed.form, form, "{:?}...", &line[..20.min(line.len())]);
            assert!(line.ends_with(parsed.message));
        }
        let folded = "#012".repeat(size / 4);
        assert_eq!(unfold_rsyslog(&folded).count(), size / 4 + 1);
        let escaped = "#011".repeat(size / 4);
        let lines: Vec<_> = unfold_rsyslog(&escaped).collect();
        assert_eq!(lines[0].len(), size / 4);
    }

    // ---- calendar ----

    #[test]
    fn calendar_arithmetic() {
        // Values from GNU `date -u -d DATE +%s`.
        for (date, seconds) in [
            ((1970, 1, 1), 0),
            ((2024, 2, 29), 1_709_164_800),
            ((2000, 3, 1), 951_868_800),
            ((1969, 12, 31), -86_400),
            ((9999, 12, 31), 253_402_214_400),
        ] {
            let (year, month, day) = date;
            let date_time = CivilDateTime::new(year, month, day, 0, 0, 0, 0).unwrap();
            assert_eq!(date_time.unix_seconds(0), seconds, "{date:?}");
        }
        for days in (-800_000..3_000_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(CivilDateTime::new(2023, 2, 29, 0, 0, 0, 0), None);
        assert_eq!(CivilDateTime::new(1900, 2, 29, 0, 0, 0, 0), None);
        assert!(CivilDateTime::new(2000, 2, 29, 0, 0, 0, 0).is_some());
        assert_eq!(CivilDateTime::new(2024, 4, 31, 0, 0, 0, 0), None);
        assert_eq!(CivilDateTime::new(2024, 1, 1, 24, 0, 0, 0), None);
        // Extreme contexts do not overflow.
        let extreme = TimeContext {
            default_year: i32::MIN,
            default_offset_seconds: i32::MIN,
            reference_month: Some(0),
        };
        let line = split_prefix("Jan  1 00:00:00 h kernel: x", &extreme);
        assert_eq!(line.time.and_then(|time| time.unix_nanos(&extreme)), None);
        let far = TimeContext::from_reference(i64::MAX, i32::MAX);
        assert_eq!(far.default_year, i32::MAX);
        let line = split_prefix("Jan  1 00:00:00 h kernel: x", &far);
        assert_eq!(line.time.and_then(|time| time.unix_nanos(&far)), None);
    }
}
