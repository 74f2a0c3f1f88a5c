//! One line of any log text: its prefix taken off (`split_prefix`) and
//! rsyslog's `#012` folding undone (`unfold_rsyslog`). Checks that the
//! message, host, tag and caller are pieces of the line, that a line without
//! prefix is returned whole, and that the folded lines add up. Then renders
//! a time taken from the input in the dmesg, dmesg -T, BSD syslog, ISO 8601
//! and kmsg forms and checks that it parses back to the same instant (the
//! calendar here is computed independently of the parser's).
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use oomscope::kernel_log::text::{
    split_prefix, unfold_rsyslog, LineTime, PrefixForm, TextLine, TimeContext,
};

const CONTEXTS: [TimeContext; 3] = [
    TimeContext {
        default_year: 2024,
        default_offset_seconds: 0,
        reference_month: None,
    },
    TimeContext {
        default_year: i32::MIN,
        default_offset_seconds: i32::MAX,
        reference_month: Some(1),
    },
    TimeContext {
        default_year: i32::MAX,
        default_offset_seconds: i32::MIN,
        reference_month: Some(13),
    },
];

/// Whether `part` lies inside `whole` (a borrowed piece of it).
fn within(whole: &str, part: &str) -> bool {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    at >= start && at + part.len() <= start + whole.len()
}

fn check_line(line: &str, parsed: &TextLine, ctx: &TimeContext) {
    let cleaned = line
        .strip_prefix('\u{feff}')
        .unwrap_or(line)
        .trim_start_matches([' ', '\t'])
        .trim_end_matches(['\r', '\n']);
    // The message is the end of the line (its prefix is the head).
    assert!(within(line, parsed.message));
    assert!(cleaned.ends_with(parsed.message));
    assert!(!parsed.message.starts_with([' ', '\t']) || parsed.form == PrefixForm::None);
    assert!(!parsed.message.ends_with(['\r', '\n']));
    for piece in [parsed.host, parsed.tag, parsed.caller]
        .into_iter()
        .flatten()
    {
        assert!(within(line, piece));
        assert!(!piece.is_empty());
        assert!(!piece.contains([' ', '\t']));
    }
    // (RFC 5424's APP-NAME is any printable ASCII, `:` too.)
    if let Some(tag) = parsed.tag.filter(|_| parsed.form != PrefixForm::Rfc5424) {
        assert!(!tag.ends_with(':'));
    }
    if parsed.form == PrefixForm::None && parsed.printk_dropped.is_none() {
        assert_eq!(parsed.message, cleaned);
        assert_eq!(
            (parsed.host, parsed.tag, parsed.time, parsed.kernel_time_us),
            (None, None, None, None)
        );
    }
    if let Some(time) = parsed.time {
        let nanos = time.unix_nanos(ctx);
        if let LineTime::Instant { unix_nanos } = time {
            assert_eq!(nanos, Some(unix_nanos));
        }
        if let LineTime::Civil { date_time, .. } = time {
            assert!((1..=12).contains(&date_time.month) && date_time.hour < 24);
        }
    }
    // The same line with the prefix taken off again keeps its message
    // within it.
    let again = split_prefix(parsed.message, ctx);
    assert!(parsed.message.ends_with(again.message));
}

fn check_unfold(message: &str) {
    let lines: Vec<Cow<str>> = unfold_rsyslog(message).collect();
    let mut folds = 0;
    let mut rest = message;
    while let Some((_, after)) = rest.split_once("#012") {
        folds += 1;
        rest = after;
    }
    assert_eq!(lines.len(), folds + 1);
    let total: usize = lines.iter().map(|line| line.len()).sum();
    assert!(total + 4 * folds <= message.len());
    for line in &lines {
        assert!(!line.contains("#012"));
        if let Cow::Borrowed(piece) = line {
            assert!(within(message, piece));
        }
    }
}

/// Days since 1970-01-01 to a date (the inverse of the parser's direction).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// A time from the input rendered in each form must parse back to it.
fn check_round_trip(data: &[u8], message: &str) {
    let Some(bytes) = data.get(..16) else {
        return;
    };
    let word = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u64, |value, byte| value << 8 | u64::from(*byte))
    };
    // Up to 2540 (nanoseconds since 1970 fit in u64 until 2554).
    let seconds = word(0..6) % 18_000_000_000;
    let micros = word(6..9) % 1_000_000;
    let offset_minutes = (word(9..11) % (2 * 24 * 60 - 1)) as i64 - (24 * 60 - 1);
    let monotonic_us = word(11..16) % 1_000_000_000_000_000;
    let local = seconds as i64 + offset_minutes * 60;
    let days = local.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let of_day = local.rem_euclid(86_400);
    let (hour, minute, second) = (of_day / 3_600, of_day / 60 % 60, of_day % 60);
    if !(1970..=9999).contains(&year) {
        return;
    }
    let month_name = MONTHS[month as usize - 1];
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let exact = seconds * 1_000_000_000;
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let (offset_hours, offset_rest) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
    let ctx = TimeContext {
        default_year: year as i32,
        default_offset_seconds: (offset_minutes * 60) as i32,
        reference_month: None,
    };
    let message = message.trim_start_matches([' ', '\t']);

    let iso = format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}{sign}{offset_hours:02}:{offset_rest:02} host kernel: {message}"
    );
    let parsed = split_prefix(&iso, &ctx);
    assert_eq!(parsed.form, PrefixForm::Iso8601, "{iso}");
    assert_eq!(
        parsed.time,
        Some(LineTime::Instant {
            unix_nanos: exact + micros * 1_000
        }),
        "{iso}"
    );
    assert_eq!((parsed.host, parsed.tag), (Some("host"), Some("kernel")));

    let syslog =
        format!("{month_name} {day:>2} {hour:02}:{minute:02}:{second:02} host kernel: {message}");
    let parsed = split_prefix(&syslog, &ctx);
    assert_eq!(parsed.form, PrefixForm::Syslog, "{syslog}");
    assert_eq!(
        parsed.time.and_then(|time| time.unix_nanos(&ctx)),
        Some(exact),
        "{syslog}"
    );

    let ctime = format!(
        "[{weekday} {month_name} {day:>2} {hour:02}:{minute:02}:{second:02} {year}] {message}"
    );
    let parsed = split_prefix(&ctime, &ctx);
    assert_eq!(parsed.form, PrefixForm::DmesgHuman, "{ctime}");
    assert_eq!(
        parsed.time.and_then(|time| time.unix_nanos(&ctx)),
        Some(exact),
        "{ctime}"
    );

    let (whole, fraction) = (monotonic_us / 1_000_000, monotonic_us % 1_000_000);
    let dmesg = format!("[{whole:>5}.{fraction:06}] {message}");
    let parsed = split_prefix(&dmesg, &ctx);
    assert_eq!(parsed.kernel_time_us, Some(monotonic_us), "{dmesg}");
    let kmsg = format!("4,{seconds},{monotonic_us},-;{message}");
    let parsed = split_prefix(&kmsg, &ctx);
    assert_eq!(parsed.form, PrefixForm::Kmsg, "{kmsg}");
    assert_eq!(parsed.kernel_time_us, Some(monotonic_us));
    if !message.contains(['\r', '\n']) {
        assert_eq!(parsed.message, message.trim_end_matches(['\r', '\n']));
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        for ctx in &CONTEXTS {
            let parsed = split_prefix(line, ctx);
            check_line(line, &parsed, ctx);
            check_unfold(parsed.message);
        }
    }
    let message = text.get(16..).unwrap_or_default();
    let message = message.split('\n').next().unwrap_or_default();
    check_round_trip(data, message);
});
