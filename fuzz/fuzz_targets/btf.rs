//! The kernel's BTF (/sys/kernel/btf/vmlinux), read at load time for the
//! `task_struct` offsets the exec hook reads: never a panic, and an offset
//! found is one the blob has.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::ebpf::btf::{Btf, TaskOffsets};

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data.to_vec()) else {
        return;
    };
    let offsets = TaskOffsets::from_btf(&btf);
    for (name, found) in [
        ("real_parent", offsets.real_parent),
        ("tgid", offsets.tgid),
        ("start_boottime", offsets.start_boottime),
    ] {
        if let Some(at) = found {
            let member = btf.member("task_struct", name).expect("a found member");
            assert_eq!(member.offset, usize::from(at));
        }
    }
});
