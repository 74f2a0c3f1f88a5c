//! The `file_storage` persistent queue reading a damaged queue directory:
//! items written by the queue itself (some then torn or flipped, as a power
//! loss leaves them), files with arbitrary bytes under an item's name,
//! leftover temp files and strangers. Items that read back are decoded as
//! the exporter helper does.
//!
//! Checked: every intact item comes back once, byte for byte, in order;
//! a damaged one is skipped (and removed), never handed on; items taken and
//! not removed are still there after a restart (nothing acknowledged is
//! lost); what decodes re-encodes to the same request.
//!
//! Input: chunks of `[kind byte][u16 LE length][bytes]`.
#![no_main]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use libfuzzer_sys::fuzz_target;
use oomscope::exporters::helper::{decode_request, encode_request};
use oomscope::extensions::file_storage::{PersistentQueue, Popped};
use oomscope_fuzz::{scratch_dir, Input};

#[derive(Debug)]
enum Expect {
    /// Written by the queue and left alone: comes back as it is.
    Intact(Vec<u8>),
    /// Written by the queue, then damaged: must be skipped.
    Damaged,
    /// Arbitrary bytes: if they come back, as the body after the header.
    Raw(Vec<u8>),
}

fn item_path(dir: &std::path::Path, seq: u64) -> std::path::PathBuf {
    dir.join(format!("{seq:020}.item"))
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir("file_storage_queue").join("queue");
    let mut input = Input::new(data);
    let mut expect: BTreeMap<u64, Expect> = BTreeMap::new();
    {
        let queue = PersistentQueue::open(dir.clone(), false).expect("open an empty queue");
        let mut raw_seq = 1_000_000;
        while !input.is_empty() && expect.len() < 16 {
            let kind = input.byte();
            let len = usize::from(input.u16());
            let bytes = input.take(len);
            match kind % 6 {
                // Pushed, left intact.
                0 | 1 => {
                    let seq = queue.push(bytes).expect("push");
                    expect.insert(seq, Expect::Intact(bytes.to_vec()));
                }
                // Pushed, then torn (truncated) at some length.
                2 => {
                    let seq = queue.push(bytes).expect("push");
                    let file = OpenOptions::new()
                        .write(true)
                        .open(item_path(&dir, seq))
                        .expect("item");
                    let size = file.metadata().expect("stat").len();
                    file.set_len(u64::from(kind) % size).expect("truncate");
                    expect.insert(seq, Expect::Damaged);
                }
                // Pushed, then one byte changed.
                3 => {
                    let seq = queue.push(bytes).expect("push");
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(item_path(&dir, seq))
                        .expect("item");
                    let size = file.metadata().expect("stat").len();
                    let at = u64::from(kind) % size;
                    let mut b = [0u8];
                    file.read_exact_at(&mut b, at).expect("read");
                    file.write_all_at(&[b[0] ^ (kind | 1)], at).expect("write");
                    expect.insert(seq, Expect::Damaged);
                }
                // Arbitrary bytes under an item's name.
                4 => {
                    raw_seq += 1;
                    std::fs::write(item_path(&dir, raw_seq), bytes).expect("write");
                    expect.insert(raw_seq, Expect::Raw(bytes.to_vec()));
                }
                // A temp file a crash left, and a stranger: neither is an item.
                _ => {
                    std::fs::write(dir.join(format!(".{:020}.tmp", kind)), bytes).expect("write");
                    std::fs::write(dir.join("notes.txt"), bytes).expect("write");
                }
            }
        }
    }

    // A restart: everything is read back in order.
    let queue = PersistentQueue::open(dir.clone(), false).expect("reopen");
    assert_eq!(queue.len(), expect.len());
    let mut kept = 0;
    for (&seq, expected) in &expect {
        let popped = queue.pop().expect("an item for each file");
        match (popped, expected) {
            (Popped::Item(item), Expect::Intact(bytes)) => {
                assert_eq!(item.seq, seq);
                assert_eq!(&item.data[..], &bytes[..], "an intact item changed");
                kept += 1;
            }
            (Popped::Item(item), Expect::Raw(bytes)) => {
                assert_eq!(item.seq, seq);
                assert!(
                    bytes.ends_with(&item.data),
                    "an item's body is not the file's tail"
                );
                kept += 1;
            }
            (Popped::Skipped { .. }, Expect::Damaged | Expect::Raw(_)) => {
                assert!(
                    !item_path(&dir, seq).exists(),
                    "a corrupt item stays on disk"
                );
            }
            (popped, expected) => panic!("item {seq}: {popped:?}, expected {expected:?}"),
        }
    }
    assert!(queue.pop().is_none());
    assert_eq!(queue.in_flight(), kept);

    // Items taken and not removed are read again after a restart.
    drop(queue);
    let queue = PersistentQueue::open(dir.clone(), false).expect("reopen");
    assert_eq!(queue.len(), kept, "taken items were lost");
    while let Some(popped) = queue.pop() {
        let Popped::Item(item) = popped else {
            panic!("an item read before no longer reads");
        };
        if let Ok(payload) = decode_request(&item.data) {
            let encoded = encode_request(&payload);
            let again = decode_request(&encoded).expect("a re-encoded item decodes");
            assert_eq!(encode_request(&again), encoded, "queue item round trip");
        }
        queue.remove(item.seq).expect("remove");
    }
    drop(queue);
    let queue = PersistentQueue::open(dir.clone(), false).expect("reopen");
    assert!(queue.is_empty(), "removed items came back");
    for entry in std::fs::read_dir(&dir).expect("list") {
        let name = entry.expect("entry").file_name();
        assert!(
            !name.to_string_lossy().ends_with(".tmp"),
            "a leftover temp file stays"
        );
    }
});
