//! User side of the `oom_kill_process` hook
//! (`receiver-ebpf/src/probes/oom_kill_process.rs`): the offsets it reads
//! from the kernel's BTF, the run-time choice between `fentry` and
//! `kprobe`, and the memory cgroup's path from the kernfs id it sends.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use receiver_common::oom::FIELD_ABSENT;
use receiver_common::oom_scope::OomControlLayout;
use serde::Deserialize;

use super::btf::{Btf, Shape};

/// Which attach type the hook may use (`scope_hook` in the oom receiver's
/// config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScopeHookChoice {
    /// `fentry`, else `kprobe`, else none (the kernel log gives the scope).
    #[default]
    Auto,
    /// `fentry` only.
    Fentry,
    /// `kprobe` only.
    Kprobe,
    /// Not attached.
    Off,
}

/// The hook in use, or why none is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeHookStatus {
    Fentry,
    Kprobe,
    Unavailable(String),
}

impl ScopeHookStatus {
    /// The `oom.hook` value of the kills it saw.
    #[must_use]
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::Fentry => Some("fentry"),
            Self::Kprobe => Some("kprobe"),
            Self::Unavailable(_) => None,
        }
    }
}

impl std::fmt::Display for ScopeHookStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fentry => write!(f, "fentry on oom_kill_process"),
            Self::Kprobe => write!(f, "kprobe on oom_kill_process"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// The offsets the hook reads, from `btf`; `None` when the essentials (the
/// victim, the constraint and the memcg pointer) are not all there.
#[must_use]
pub fn layout_from_btf(btf: &Btf) -> Option<OomControlLayout> {
    let at = |strukt: &str, member: &str, want: Option<Shape>| -> u16 {
        btf.member(strukt, member)
            .filter(|m| want.is_none_or(|w| btf.shape(m.type_id) == w))
            .and_then(|m| u16::try_from(m.offset).ok())
            .unwrap_or(FIELD_ABSENT)
    };
    // Nested: the outer member's offset plus the inner one's.
    let sum = |outer: u16, inner: u16| -> u16 {
        if outer == FIELD_ABSENT || inner == FIELD_ABSENT {
            return FIELD_ABSENT;
        }
        outer
            .checked_add(inner)
            .filter(|v| *v != FIELD_ABSENT)
            .unwrap_or(FIELD_ABSENT)
    };
    let memory = at("mem_cgroup", "memory", None);
    let layout = OomControlLayout {
        oc_memcg: at("oom_control", "memcg", Some(Shape::Pointer)),
        oc_gfp_mask: at("oom_control", "gfp_mask", Some(Shape::Int(4))),
        oc_order: at("oom_control", "order", Some(Shape::Int(4))),
        oc_totalpages: at("oom_control", "totalpages", Some(Shape::Int(8))),
        oc_chosen: at("oom_control", "chosen", Some(Shape::Pointer)),
        oc_chosen_points: at("oom_control", "chosen_points", Some(Shape::Int(8))),
        // An enum: its shape is not an int.
        oc_constraint: at("oom_control", "constraint", None),
        task_tgid: at("task_struct", "tgid", Some(Shape::Int(4))),
        // atomic_long_t (a struct holding a long).
        memcg_usage: sum(memory, at("page_counter", "usage", None)),
        memcg_max: sum(memory, at("page_counter", "max", Some(Shape::Int(8)))),
        memcg_cgroup: sum(
            at("mem_cgroup", "css", None),
            at("cgroup_subsys_state", "cgroup", Some(Shape::Pointer)),
        ),
        cgroup_kn: at("cgroup", "kn", Some(Shape::Pointer)),
        kn_id: at("kernfs_node", "id", Some(Shape::Int(8))),
        _pad0: 0,
    };
    let essentials = [
        layout.oc_chosen,
        layout.task_tgid,
        layout.oc_constraint,
        layout.oc_memcg,
    ];
    essentials
        .iter()
        .all(|v| *v != FIELD_ABSENT)
        .then_some(layout)
}

/// Bound on the directories walked to find a memcg by its id.
const MAX_CGROUPS_WALKED: usize = 20_000;
/// Bound on the ids remembered.
const MAX_PATHS_CACHED: usize = 4096;

/// Memory cgroup paths by kernfs id (the inode number of the cgroup's
/// directory), found by walking the memory hierarchy and remembered.
#[derive(Debug)]
pub struct MemcgPaths {
    root: Option<PathBuf>,
    cache: HashMap<u64, String>,
}

impl MemcgPaths {
    /// The memory hierarchy under `cgroup_path`: v1's `memory`, else the
    /// v2 root (plain or `unified`). Inode numbers are per hierarchy, so
    /// only the one holding the memory controller is searched.
    #[must_use]
    pub fn new(cgroup_path: &Path) -> Self {
        let v1 = cgroup_path.join("memory");
        let root = if v1.join("memory.limit_in_bytes").is_file() {
            Some(v1)
        } else {
            [cgroup_path.to_path_buf(), cgroup_path.join("unified")]
                .into_iter()
                .find(|p| p.join("cgroup.controllers").is_file())
        };
        MemcgPaths {
            root,
            cache: HashMap::new(),
        }
    }

    /// The path (as in /proc/PID/cgroup) of the memcg with kernfs id `id`.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.cache.get(&id) {
            return Some(path.clone());
        }
        let root = self.root.clone()?;
        let path = find_by_inode(&root, id)?;
        if self.cache.len() >= MAX_PATHS_CACHED {
            self.cache.clear();
        }
        self.cache.insert(id, path.clone());
        Some(path)
    }
}

/// Breadth first: the OOM'd cgroup is usually near the top.
fn find_by_inode(root: &Path, ino: u64) -> Option<String> {
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    let mut walked = 0;
    while let Some(dir) = queue.pop_front() {
        walked += 1;
        if walked > MAX_CGROUPS_WALKED {
            tracing::debug!(ino, "memcg id not found within the walk's bound");
            return None;
        }
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == ino) {
            let rel = dir.strip_prefix(root).ok()?;
            return Some(format!("/{}", rel.display()));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back(entry.path());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memcg_is_found_by_its_directory_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("cgroup.controllers"), "memory\n").expect("write");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        let ino = std::fs::metadata(root.join("a/b")).expect("stat").ino();
        let mut paths = MemcgPaths::new(root);
        assert_eq!(paths.path(ino).as_deref(), Some("/a/b"));
        let root_ino = std::fs::metadata(root).expect("stat").ino();
        assert_eq!(paths.path(root_ino).as_deref(), Some("/"));
        // Cached: found again after the directory is gone.
        std::fs::remove_dir(root.join("a/b")).expect("rmdir");
        assert_eq!(paths.path(ino).as_deref(), Some("/a/b"));
        assert_eq!(paths.path(u64::MAX), None);
        // No hierarchy: nothing.
        assert_eq!(MemcgPaths::new(&root.join("none")).path(ino), None);
    }

    /// This machine's kernel has BTF: every offset the hook reads is found.
    #[test]
    fn this_kernels_btf_has_the_hooks_offsets() {
        let btf = match Btf::read(Path::new(super::super::btf::VMLINUX_BTF)) {
            Ok(btf) => btf,
            Err(e) => {
                eprintln!("SKIPPED: no kernel BTF here: {e}");
                return;
            }
        };
        let layout = layout_from_btf(&btf).expect("the essentials");
        for (name, v) in [
            ("oc_memcg", layout.oc_memcg),
            ("oc_gfp_mask", layout.oc_gfp_mask),
            ("oc_order", layout.oc_order),
            ("oc_totalpages", layout.oc_totalpages),
            ("oc_chosen", layout.oc_chosen),
            ("oc_chosen_points", layout.oc_chosen_points),
            ("oc_constraint", layout.oc_constraint),
            ("task_tgid", layout.task_tgid),
            ("memcg_usage", layout.memcg_usage),
            ("memcg_max", layout.memcg_max),
            ("memcg_cgroup", layout.memcg_cgroup),
            ("cgroup_kn", layout.cgroup_kn),
            ("kn_id", layout.kn_id),
        ] {
            assert_ne!(v, FIELD_ABSENT, "{name}");
        }
        // struct oom_control is small; its members come first.
        assert!(layout.oc_constraint < 128, "{layout:?}");
    }
}
