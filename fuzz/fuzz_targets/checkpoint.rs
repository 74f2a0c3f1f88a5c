//! Checkpoints as a restart reads them from `file_storage`: the filelog
//! receiver's file offsets and the kmsg receiver's sequence number, stored
//! framed by the key/value store or as arbitrary bytes (a damaged file).
//! A checkpoint that loads must store and load to the same value again.
//!
//! Input: a flags byte, the boot id line (the kmsg checkpoint counts only
//! for this boot), then the stored value.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use oomscope::config::ComponentId;
use oomscope::extensions::file_storage::{FileStorage, FileStorageConfig, KvStore};
use oomscope::receivers::filelog::checkpoint::Checkpoints;
use oomscope::receivers::kmsg::checkpoint::{self, Checkpoint, CHECKPOINT_KEY};
use oomscope_fuzz::{scratch_dir, Input};

/// Stores `value` under `key`: through the store (framed), or as the raw
/// content of the key's file.
fn put(kv: &KvStore, dir: &std::path::Path, key: &str, value: &[u8], raw: bool) {
    kv.set(key, value).expect("set");
    if raw {
        let file = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").path())
            .find(|p| p.is_file())
            .expect("the key's file");
        std::fs::write(file, value).expect("write");
    }
}

fn kv_dir(root: &std::path::Path) -> PathBuf {
    std::fs::read_dir(root)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("the component's directory")
        .join("kv")
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let rest = input.rest();
    let (boot_id, value) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&rest[..i]).into_owned(),
            &rest[i + 1..],
        ),
        None => (String::new(), rest),
    };
    let raw = flags & 1 == 1;
    let root = scratch_dir("checkpoint");
    let cfg = FileStorageConfig {
        directory: root.clone(),
        ..FileStorageConfig::default()
    };
    let storage =
        FileStorage::open(&cfg, &ComponentId::new("file_storage", None)).expect("storage");

    if flags & 2 == 0 {
        // filelog: the file offsets.
        let kv = storage
            .kv("receiver", &ComponentId::new("filelog", None))
            .expect("kv");
        put(&kv, &kv_dir(&root), "file_offsets", value, raw);
        let (_, resumed) =
            Checkpoints::load(Some(kv.clone())).expect("a stored value loads or is ignored");
        let Some(resumed) = resumed else { return };
        let (checkpoints, _) = Checkpoints::load(Some(kv.clone())).expect("load");
        for (id, file) in resumed.iter().enumerate() {
            checkpoints.register(id as u64, file.fingerprint.clone(), file.offset);
        }
        checkpoints.save().expect("save");
        let (_, again) = Checkpoints::load(Some(kv)).expect("load");
        assert_eq!(
            again.as_ref(),
            Some(&resumed),
            "file offsets changed in a save and load"
        );
    } else {
        // kmsg: the sequence number of this boot.
        let kv = storage
            .kv("receiver", &ComponentId::new("kmsg", None))
            .expect("kv");
        put(&kv, &kv_dir(&root), CHECKPOINT_KEY, value, raw);
        let Some(seq) =
            checkpoint::load(&kv, &boot_id).expect("a stored value loads or is ignored")
        else {
            return;
        };
        let stored = Checkpoint {
            boot_id: boot_id.clone(),
            seq,
        };
        checkpoint::store(&kv, &stored).expect("store");
        assert_eq!(checkpoint::load(&kv, &boot_id).expect("load"), Some(seq));
    }
});
