//! One `/dev/kmsg` record (one `read(2)`): parsed, bounded, and written
//! back in the kernel's own format (with its `\xNN` escapes), which must
//! parse to the same record. Then matched and turned into a LogRecord.
#![no_main]

use std::fmt::Write;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oomscope::clock::Clock;
use oomscope::kernel_log::kmsg_record::{KmsgRecord, MAX_DICT_ENTRIES, MAX_MESSAGE_BYTES};
use oomscope::patterns::Library;
use oomscope::receivers::kmsg::kernel_records::record_log;

static LIBRARY: LazyLock<Library> = LazyLock::new(Library::builtin);

/// The kernel escapes control bytes, bytes >= 0x7f and `\` (printk's
/// `msg_print_ext_body`); escaping more than it does is still valid.
fn escape(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        if !(b' '..0x7f).contains(&b) || b == b'\\' {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(char::from(b));
        }
    }
}

fn encode(record: &KmsgRecord) -> Vec<u8> {
    let prefix = u32::from(record.facility) << 3 | u32::from(record.level);
    let flag = if record.continuation { 'c' } else { '-' };
    let mut out = format!("{prefix},{},{},{flag};", record.seq, record.monotonic_us);
    escape(&mut out, &record.message);
    out.push('\n');
    for (key, value) in &record.dict {
        out.push(' ');
        escape(&mut out, key);
        out.push('=');
        escape(&mut out, value);
        out.push('\n');
    }
    out.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Ok(record) = KmsgRecord::parse(data) else {
        return;
    };
    assert!(record.level <= 7);
    assert!(record.message.len() <= MAX_MESSAGE_BYTES);
    assert!(record.dict.len() <= MAX_DICT_ENTRIES);
    for (key, value) in &record.dict {
        assert!(key.len() <= MAX_MESSAGE_BYTES && value.len() <= MAX_MESSAGE_BYTES);
        assert!(!key.contains('='));
    }
    let again = KmsgRecord::parse(&encode(&record)).expect("a re-encoded record parses");
    assert_eq!(again, record);

    let matched = LIBRARY.match_line(&record.message);
    for clock in [
        Clock { boot_unix_nano: 0 },
        Clock {
            boot_unix_nano: u64::MAX,
        },
    ] {
        let log = record_log(&record, matched.as_ref(), clock);
        assert!(log.severity_number > 0);
    }
});
