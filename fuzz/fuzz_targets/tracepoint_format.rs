//! The tracepoint format file (`events/oom/mark_victim/format`), read from
//! tracefs at load time to place the eBPF program's field reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::ebpf::format::parse_fields;
use oomscope::ebpf::{parse_mark_victim_format, FIELD_ABSENT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_mark_victim_format(text) {
        Ok(layout) => {
            assert_ne!(layout.pid, FIELD_ABSENT, "a layout without pid");
            let fields = parse_fields(text).expect("a layout's fields parse");
            assert!(fields
                .iter()
                .any(|f| f.name == "pid" && f.size == 4 && f.offset == usize::from(layout.pid)));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
