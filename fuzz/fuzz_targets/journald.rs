//! What the `journald` receiver parses itself (libsystemd reads the journal
//! files): a journal file's header, checked before the file is read, and a
//! journal cursor (from libsystemd, or a stored checkpoint). Never a panic;
//! a header found good says what its file size allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::receivers::journald::checkpoint::CursorFields;
use oomscope::receivers::journald::files::check_header_bytes;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are the file's size, the rest its first bytes.
    let Some((size, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    if check_header_bytes(header, size).is_ok() {
        let le64 = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        assert!(le64(88).saturating_add(le64(96)) <= size);
    }
    let _ = CursorFields::parse(&String::from_utf8_lossy(header));
});
