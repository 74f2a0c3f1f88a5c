//! One `/dev/kmsg` record.
//!
//! The format (Documentation/ABI/testing/dev-kmsg):
//!
//! ```text
//! 6,418,391799786,-;Memory cgroup out of memory: Killed process 11976 (python3) ...\n
//!  SUBSYSTEM=memory\n
//!  DEVICE=+memory:foo\n
//! ```
//!
//! The header is `prefix,seq,usec,flag[,more fields];` where `prefix` is the
//! syslog `facility << 3 | level`; later kernels may append comma-separated
//! fields before the `;`, which are ignored here. The kernel escapes
//! non-printable bytes and `\` in the message and the dictionary as `\xNN`.

/// Longest message kept, in bytes (after decoding). The kernel's own records
/// are at most about 1 KiB; anything longer is truncated, not rejected.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Most dictionary (` KEY=value`) lines kept per record.
pub const MAX_DICT_ENTRIES: usize = 32;

/// One `/dev/kmsg` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgRecord {
    /// Syslog level, 0 (emerg) ..= 7 (debug).
    pub level: u8,
    /// Syslog facility (0 = kernel).
    pub facility: u8,
    /// The kernel's 64-bit sequence number.
    pub seq: u64,
    /// CLOCK_MONOTONIC of the record, in microseconds.
    pub monotonic_us: u64,
    /// `c` (continuation of a previous record's line) or `-`; kept as given.
    pub continuation: bool,
    /// The message (escapes like `\x0a` decoded, invalid UTF-8 replaced).
    pub message: String,
    /// ` KEY=value` dictionary lines (SUBSYSTEM=, DEVICE=).
    pub dict: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed /dev/kmsg record: {0}")]
pub struct RecordError(pub String);

impl KmsgRecord {
    /// Parses one record as read from `/dev/kmsg` (one `read(2)`).
    ///
    /// Never panics: malformed headers are an error, an over-long message is
    /// truncated to [`MAX_MESSAGE_BYTES`], invalid UTF-8 is replaced.
    pub fn parse(bytes: &[u8]) -> Result<KmsgRecord, RecordError> {
        if bytes.is_empty() {
            return Err(RecordError("empty record".into()));
        }
        let semicolon = bytes
            .iter()
            .position(|&b| b == b';')
            .ok_or_else(|| RecordError(format!("no ';' after the header in {}", preview(bytes))))?;
        let header = std::str::from_utf8(&bytes[..semicolon])
            .map_err(|_| RecordError(format!("header is not ASCII: {}", preview(bytes))))?;
        let mut fields = header.split(',');
        let prefix: u32 = parse_field(fields.next(), "prefix", header)?;
        let seq: u64 = parse_field(fields.next(), "sequence number", header)?;
        let monotonic_us: u64 = parse_field(fields.next(), "timestamp", header)?;
        let flag = fields
            .next()
            .ok_or_else(|| RecordError(format!("missing flag field in header {header:?}")))?;
        // Remaining comma fields are future extensions: ignored.
        let continuation = flag.starts_with('c');
        let facility = u8::try_from(prefix >> 3).map_err(|_| {
            RecordError(format!("prefix {prefix} out of range in header {header:?}"))
        })?;
        let level = (prefix & 7) as u8;

        let rest = &bytes[semicolon + 1..];
        let (message_raw, mut dict_raw) = match rest.iter().position(|&b| b == b'\n') {
            Some(newline) => (&rest[..newline], &rest[newline + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let message = decode_escapes(message_raw, MAX_MESSAGE_BYTES);

        let mut dict = Vec::new();
        while !dict_raw.is_empty() {
            let (line, tail) = match dict_raw.iter().position(|&b| b == b'\n') {
                Some(newline) => (&dict_raw[..newline], &dict_raw[newline + 1..]),
                None => (dict_raw, &dict_raw[dict_raw.len()..]),
            };
            dict_raw = tail;
            // Dictionary lines start with one space; anything else is not ours.
            let Some(entry) = line.strip_prefix(b" ") else {
                continue;
            };
            if dict.len() >= MAX_DICT_ENTRIES {
                break;
            }
            let entry = decode_escapes(entry, MAX_MESSAGE_BYTES);
            if let Some((key, value)) = entry.split_once('=') {
                dict.push((key.to_owned(), value.to_owned()));
            }
        }

        Ok(KmsgRecord {
            level,
            facility,
            seq,
            monotonic_us,
            continuation,
            message,
            dict,
        })
    }

    /// The value of dictionary key `key` (`SUBSYSTEM`, `DEVICE`), if present.
    pub fn dict_value(&self, key: &str) -> Option<&str> {
        self.dict
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_field<T: std::str::FromStr>(
    field: Option<&str>,
    what: &str,
    header: &str,
) -> Result<T, RecordError> {
    let field = field.ok_or_else(|| RecordError(format!("missing {what} in header {header:?}")))?;
    field
        .trim()
        .parse()
        .map_err(|_| RecordError(format!("bad {what} {field:?} in header {header:?}")))
}

/// Decodes the kernel's `\xNN` escapes, stops after `limit` decoded bytes
/// (on a character boundary), and replaces invalid UTF-8.
fn decode_escapes(raw: &[u8], limit: usize) -> String {
    let mut out = Vec::with_capacity(raw.len().min(limit));
    let mut i = 0;
    while i < raw.len() && out.len() < limit {
        if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'x') {
            if let (Some(hi), Some(lo)) = (
                raw.get(i + 2).and_then(|&b| hex_value(b)),
                raw.get(i + 3).and_then(|&b| hex_value(b)),
            ) {
                out.push(hi << 4 | lo);
                i += 4;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    let mut text = match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    };
    if text.len() > limit {
        // Only reachable through replacement characters growing the text.
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The start of a record, for error messages.
fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    format!("{:?}", String::from_utf8_lossy(head))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn parses_a_plain_record() {
        let record = KmsgRecord::parse(b"6,418,391799786,-;Memory cgroup out of memory\n").unwrap();
        assert_eq!(record.level, 6);
        assert_eq!(record.facility, 0);
        assert_eq!(record.seq, 418);
        assert_eq!(record.monotonic_us, 391799786);
        assert!(!record.continuation);
        assert_eq!(record.message, "Memory cgroup out of memory");
        assert!(record.dict.is_empty());
    }

    #[test]
    fn splits_the_prefix_into_facility_and_level() {
        // LOG_USER (1) << 3 | LOG_WARNING (4)
        let record = KmsgRecord::parse(b"12,1,2,-;hi").unwrap();
        assert_eq!((record.facility, record.level), (1, 4));
        assert_eq!(record.message, "hi");
    }

    #[test]
    fn continuation_flag_and_extra_header_fields() {
        let record = KmsgRecord::parse(b"4,7,8,c,caller=T12,future;text\n").unwrap();
        assert!(record.continuation);
        assert_eq!(record.seq, 7);
        assert_eq!(record.message, "text");
        let record = KmsgRecord::parse(b"4,7,8,+;text\n").unwrap();
        assert!(!record.continuation);
    }

    #[test]
    fn decodes_escapes_and_keeps_other_backslashes() {
        let record =
            KmsgRecord::parse(b"6,1,2,-;a\\x0ab\\x5cc \\x1b[0m \\q \\x4 \\xzz end\\x\n").unwrap();
        assert_eq!(record.message, "a\nb\\c \u{1b}[0m \\q \\x4 \\xzz end\\x");
    }

    #[test]
    fn replaces_invalid_utf8() {
        let record = KmsgRecord::parse(b"6,1,2,-;bad \\xff\\xfe and raw \xc3(\n").unwrap();
        assert_eq!(record.message, "bad \u{fffd}\u{fffd} and raw \u{fffd}(");
        // An escaped multi-byte sequence decodes to the character.
        let record = KmsgRecord::parse(b"6,1,2,-;\\xc3\\xa9t\\xc3\\xa9\n").unwrap();
        assert_eq!(record.message, "été");
    }

    #[test]
    fn reads_dictionary_lines() {
        let record = KmsgRecord::parse(
            b"6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n DEVICE=n1\\x3d2\nnot a dict line\n NOEQUALS\n",
        )
        .unwrap();
        assert_eq!(record.message, "NET: Registered protocol family 10");
        assert_eq!(
            record.dict,
            vec![
                ("SUBSYSTEM".to_owned(), "net".to_owned()),
                ("DEVICE".to_owned(), "n1=2".to_owned()),
            ]
        );
        assert_eq!(record.dict_value("SUBSYSTEM"), Some("net"));
        assert_eq!(record.dict_value("NOPE"), None);
    }

    #[test]
    fn dictionary_is_bounded() {
        let mut raw = b"6,1,2,-;m\n".to_vec();
        for i in 0..1000 {
            raw.extend_from_slice(format!(" K{i}=v\n").as_bytes());
        }
        let record = KmsgRecord::parse(&raw).unwrap();
        assert_eq!(record.dict.len(), MAX_DICT_ENTRIES);
    }

    #[test]
    fn empty_message_and_missing_newline() {
        let record = KmsgRecord::parse(b"6,1,2,-;").unwrap();
        assert_eq!(record.message, "");
        let record = KmsgRecord::parse(b"6,1,2,-;\n").unwrap();
        assert_eq!(record.message, "");
    }

    #[test]
    fn rejects_malformed_headers() {
        for raw in [
            &b""[..],
            b"\n",
            b"no semicolon at all",
            b";message",
            b"6;message",
            b"6,1;message",
            b"6,1,2;message",
            b"x,1,2,-;message",
            b"6,-1,2,-;message",
            b"6,1,2.5,-;message",
            b"6,99999999999999999999999,2,-;m",
            b"4294967295,1,2,-;m",
            b"\xff,1,2,-;m",
        ] {
            let err = KmsgRecord::parse(raw);
            assert!(err.is_err(), "{raw:?} parsed as {err:?}");
        }
        let err = KmsgRecord::parse(b"x,1,2,-;message").unwrap_err();
        assert!(err.to_string().contains("bad prefix"), "{err}");
    }

    #[test]
    fn truncates_huge_messages() {
        let mut raw = b"6,1,2,-;".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 100_000));
        raw.push(b'\n');
        let record = KmsgRecord::parse(&raw).unwrap();
        assert_eq!(record.message.len(), MAX_MESSAGE_BYTES);
        // Truncation lands on a character boundary even with replacements.
        let mut raw = b"6,1,2,-;".to_vec();
        raw.extend(std::iter::repeat_n(0xffu8, 100_000));
        let record = KmsgRecord::parse(&raw).unwrap();
        assert!(record.message.len() <= MAX_MESSAGE_BYTES);
        assert!(record.message.chars().all(|c| c == '\u{fffd}'));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b6d7367);
        let alphabet = b"0123456789,;-c\\xXaf\n =\xff\xc3";
        for round in 0..20_000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| rng.random()).collect()
            } else {
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect()
            };
            if let Ok(record) = KmsgRecord::parse(&bytes) {
                assert!(record.level <= 7);
                assert!(record.message.len() <= MAX_MESSAGE_BYTES);
            }
        }
    }
}
