//! Parsing of a tracepoint's `format` file (tracefs `events/<cat>/<name>/format`).
//!
//! The `oom/mark_victim` record grew over time: older kernels record only
//! `pid`, newer ones add `comm`, memory counters, `uid`, `pgtables` and
//! `oom_score_adj`. The program reads fields at the offsets found here.

use receiver_common::oom::{MarkVictimLayout, FIELD_ABSENT};

/// Why a `format` file could not be turned into a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The text has no `field:` line: not a tracepoint format file.
    #[error("no `field:` lines: not a tracepoint format file")]
    NoFields,
    /// A `field:` line could not be parsed.
    #[error("line {line}: malformed field description: {text:?}")]
    MalformedField {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The record has no `pid` field, which every kernel's `mark_victim` has.
    #[error("no usable `pid` field (int, 4 bytes) in the mark_victim format")]
    NoPid,
    /// A field the program needs is not in the record (or has another size).
    #[error("no usable {0} field in the format")]
    MissingField(&'static str),
}

/// One `field:` line of a format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatField {
    /// The C type, e.g. `unsigned long` or `__data_loc char[]`.
    pub c_type: String,
    /// The field name, without any array suffix.
    pub name: String,
    /// Byte offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// Parses every `field:` line of a tracepoint format file (common fields included).
pub fn parse_fields(text: &str) -> Result<Vec<FormatField>, FormatError> {
    let mut fields = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let Some(rest) = trimmed.strip_prefix("field:") else {
            continue;
        };
        let malformed = || FormatError::MalformedField {
            line: index + 1,
            text: line.to_owned(),
        };
        let mut parts = rest.split(';').map(str::trim);
        let declaration = parts.next().ok_or_else(malformed)?;
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(value) = part.strip_prefix("offset:") {
                offset = value.trim().parse::<usize>().ok();
            } else if let Some(value) = part.strip_prefix("size:") {
                size = value.trim().parse::<usize>().ok();
            }
        }
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err(malformed());
        };
        // `<type> <name>` or `<type> <name>[N]`; the name is the last word.
        let (c_type, name) = declaration
            .rsplit_once(char::is_whitespace)
            .ok_or_else(malformed)?;
        let name = name.split('[').next().unwrap_or(name);
        if name.is_empty() {
            return Err(malformed());
        }
        fields.push(FormatField {
            c_type: c_type.trim().to_owned(),
            name: name.to_owned(),
            offset,
            size,
        });
    }
    if fields.is_empty() {
        return Err(FormatError::NoFields);
    }
    Ok(fields)
}

/// The optional `mark_victim` fields this layout lacks.
#[must_use]
pub fn absent_fields(layout: &MarkVictimLayout) -> Vec<&'static str> {
    [
        ("comm", layout.comm),
        ("total_vm", layout.total_vm),
        ("anon_rss", layout.anon_rss),
        ("file_rss", layout.file_rss),
        ("shmem_rss", layout.shmem_rss),
        ("uid", layout.uid),
        ("pgtables", layout.pgtables),
        ("oom_score_adj", layout.oom_score_adj),
    ]
    .into_iter()
    .filter(|&(_, offset)| offset == FIELD_ABSENT)
    .map(|(name, _)| name)
    .collect()
}

/// Turns the text of `events/oom/mark_victim/format` into the layout the
/// program reads. A field that is missing, or whose size is not the one the
/// program reads (e.g. a 4-byte `unsigned long` on a 32-bit kernel), is marked
/// absent; `pid` is required.
pub fn parse_mark_victim_format(text: &str) -> Result<MarkVictimLayout, FormatError> {
    let fields = parse_fields(text)?;
    let offset_of = |name: &str, size: usize| -> u16 {
        fields
            .iter()
            .find(|field| field.name == name && field.size == size)
            .and_then(|field| u16::try_from(field.offset).ok())
            .filter(|&offset| offset != FIELD_ABSENT)
            .unwrap_or(FIELD_ABSENT)
    };
    // The program decodes `comm` as a `__data_loc` descriptor; a fixed
    // `char comm[16]` array (not used by any kernel so far) is left absent.
    let comm = fields
        .iter()
        .find(|field| {
            field.name == "comm" && field.size == 4 && field.c_type.starts_with("__data_loc")
        })
        .and_then(|field| u16::try_from(field.offset).ok())
        .filter(|&offset| offset != FIELD_ABSENT)
        .unwrap_or(FIELD_ABSENT);
    let layout = MarkVictimLayout {
        pid: offset_of("pid", 4),
        comm,
        total_vm: offset_of("total_vm", 8),
        anon_rss: offset_of("anon_rss", 8),
        file_rss: offset_of("file_rss", 8),
        shmem_rss: offset_of("shmem_rss", 8),
        uid: offset_of("uid", 4),
        pgtables: offset_of("pgtables", 8),
        oom_score_adj: offset_of("oom_score_adj", 2),
        _pad0: 0,
    };
    if layout.pid == FIELD_ABSENT {
        return Err(FormatError::NoPid);
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `events/oom/mark_victim/format` of Linux 6.18 (this project's CI kernel).
    pub(crate) const FORMAT_6_18: &str = "name: mark_victim
ID: 609
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;
\tfield:uid_t uid;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned long pgtables;\toffset:56;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;

print fmt: \"pid=%d comm=%s total-vm=%lukB anon-rss=%lukB file-rss:%lukB shmem-rss:%lukB uid=%u pgtables=%lukB oom_score_adj=%hd\", REC->pid, __get_str(comm), REC->total_vm, REC->anon_rss, REC->file_rss, REC->shmem_rss, REC->uid, REC->pgtables, REC->oom_score_adj
";

    /// The shape of the record on kernels before 6.x: `pid` only.
    pub(crate) const FORMAT_PID_ONLY: &str = "name: mark_victim
ID: 412
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

    #[test]
    fn parses_the_6_18_record() {
        let layout = parse_mark_victim_format(FORMAT_6_18).expect("valid format");
        assert_eq!(
            layout,
            MarkVictimLayout {
                pid: 8,
                comm: 12,
                total_vm: 16,
                anon_rss: 24,
                file_rss: 32,
                shmem_rss: 40,
                uid: 48,
                pgtables: 56,
                oom_score_adj: 64,
                _pad0: 0,
            }
        );
    }

    #[test]
    fn pid_only_record_marks_the_rest_absent() {
        let layout = parse_mark_victim_format(FORMAT_PID_ONLY).expect("valid format");
        assert_eq!(
            layout,
            MarkVictimLayout {
                pid: 8,
                ..MarkVictimLayout::ABSENT
            }
        );
    }

    #[test]
    fn fields_of_unexpected_size_are_absent() {
        // A 32-bit kernel: `unsigned long` is 4 bytes.
        let text = FORMAT_6_18.replace(
            "field:unsigned long total_vm;\toffset:16;\tsize:8;",
            "field:unsigned long total_vm;\toffset:16;\tsize:4;",
        );
        let layout = parse_mark_victim_format(&text).expect("valid format");
        assert_eq!(layout.total_vm, FIELD_ABSENT);
        assert_eq!(layout.anon_rss, 24);
    }

    #[test]
    fn parses_array_names_and_common_fields() {
        let fields = parse_fields("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n")
            .expect("one field");
        assert_eq!(
            fields,
            vec![FormatField {
                c_type: "char".into(),
                name: "comm".into(),
                offset: 8,
                size: 16,
            }]
        );
        assert_eq!(parse_fields(FORMAT_6_18).expect("valid").len(), 13);
    }

    #[test]
    fn rejects_text_without_fields_or_pid() {
        assert_eq!(parse_mark_victim_format(""), Err(FormatError::NoFields));
        assert_eq!(
            parse_mark_victim_format("name: x\nformat:\n"),
            Err(FormatError::NoFields)
        );
        let no_pid = FORMAT_6_18.replace("int pid;", "int victim;");
        assert_eq!(parse_mark_victim_format(&no_pid), Err(FormatError::NoPid));
    }

    #[test]
    fn rejects_malformed_field_lines() {
        let err = parse_fields("format:\n\tfield:int pid;\toffset:eight;\tsize:4;\n")
            .expect_err("bad offset");
        assert!(
            matches!(err, FormatError::MalformedField { line: 2, .. }),
            "{err}"
        );
        let err = parse_fields("\tfield:pid;\toffset:8;\tsize:4;\n").expect_err("no type");
        assert!(
            matches!(err, FormatError::MalformedField { line: 1, .. }),
            "{err}"
        );
    }
}
