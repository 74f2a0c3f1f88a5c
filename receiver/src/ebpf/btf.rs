//! Member offsets of kernel structs from the kernel's BTF
//! (/sys/kernel/btf/vmlinux), for the programs that read `task_struct`
//! fields: Rust eBPF cannot have the kernel relocate field accesses (CO-RE),
//! so user space looks the offsets up at load and passes them in the
//! programs' layout globals (as kunai does).
//!
//! A small reader rather than a crate: `btf-rs` (the maintained BTF crate)
//! is LGPL-2.1, which this Apache-2.0 static binary does not take in
//! lightly, and its default backend parses every type into memory (41 MiB
//! peak RSS and 200 ms on Linux 6.18's 5.4 MB BTF) while its lean backend
//! needs an mmap of the sysfs file, which kernels before 6.16 refuse. This
//! one keeps the raw bytes and an index of where each type starts (4 bytes
//! per type: about 0.6 MB), answers one question and drops both. Where
//! sysfs allows it (Linux 6.16 and later) the bytes are the kernel's own,
//! mapped read-only: nothing is copied, and the 5 MB no longer count in the
//! agent's RSS at start-up; elsewhere they are read.
//!
//! Only the running kernel's BTF is read (native byte order); anything that
//! does not parse is an error, and a member that is not where and what the
//! caller expects is absent, never a guess.

use std::io::Read as _;
use std::path::Path;

/// The kernel's own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Larger than any kernel's BTF (Linux 6.18's is 5.4 MB): a bound on what is
/// read, not an expected size.
const MAX_BTF_BYTES: u64 = 64 * 1024 * 1024;
const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Each type starts with `name_off`, `info`, `size`/`type` (u32 each).
const TYPE_HEADER_LEN: usize = 12;
/// Nesting of anonymous structs and unions followed (the kernel's
/// task_struct nests two).
const MAX_ANONYMOUS_DEPTH: u32 = 8;
/// Typedefs and qualifiers followed before a type is taken as unresolvable
/// (a loop in a garbled BTF ends here).
const MAX_TYPE_CHAIN: u32 = 32;
/// Members looked at in one search, anonymous ones' included (task_struct
/// has about 300; a garbled BTF whose anonymous members nest into
/// themselves would otherwise take exponential time).
const MAX_MEMBERS_VISITED: u32 = 100_000;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why a BTF blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// Reading the file failed.
    #[error("reading {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error, as text.
        error: String,
    },
    /// Larger than any kernel's BTF.
    #[error("larger than {MAX_BTF_BYTES} bytes: not a kernel's BTF")]
    TooLarge,
    /// Not BTF in this machine's byte order.
    #[error("no BTF magic (0xeb9f, native byte order)")]
    BadMagic,
    /// The header's sections do not fit in the blob.
    #[error("BTF header describes sections outside the data")]
    BadHeader,
    /// A type record runs past its section or has an unknown kind.
    #[error("BTF type {id} at byte {at}: {why}")]
    BadType {
        /// The type's id.
        id: usize,
        /// Its byte offset in the type section.
        at: usize,
        /// What is wrong.
        why: &'static str,
    },
}

/// A member found in a struct: where it is and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Byte offset from the start of the outermost struct.
    pub offset: usize,
    /// The member's type id.
    pub type_id: u32,
}

/// What a type is, once typedefs and qualifiers are looked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An integer of this many bytes.
    Int(u32),
    /// A pointer.
    Pointer,
    /// Anything else (struct, array, enum, ...).
    Other,
}

/// A parsed BTF blob: the raw bytes and where each type starts.
#[derive(Debug)]
pub struct Btf {
    bytes: Blob,
    /// Byte range of the type section in `bytes`.
    types: std::ops::Range<usize>,
    /// Byte range of the string section in `bytes`.
    strings: std::ops::Range<usize>,
    /// Offset in `bytes` of type id `i + 1` (id 0 is `void`).
    starts: Vec<u32>,
}

/// One type record's fixed part.
#[derive(Debug, Clone, Copy)]
struct TypeHeader {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` for structs, unions, ints, enums; `type` for pointers,
    /// typedefs, qualifiers.
    size_or_type: u32,
}

/// The bytes of a BTF blob.
enum Blob {
    Read(Vec<u8>),
    Mapped(SysfsMapping),
}

impl std::ops::Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Blob::Read(bytes) => bytes,
            Blob::Mapped(mapping) => mapping.bytes(),
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            Blob::Read(_) => "read",
            Blob::Mapped(_) => "mapped",
        };
        write!(f, "{} bytes, {how}", self.len())
    }
}

/// A read-only private mapping of a whole sysfs file. sysfs backs
/// /sys/kernel/btf/vmlinux with the kernel image's own pages (a PFN
/// mapping, which RSS does not count), and a sysfs file cannot be
/// truncated under the mapping.
struct SysfsMapping {
    start: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; nothing writes through it.
unsafe impl Send for SysfsMapping {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for SysfsMapping {}

/// `f_type` of sysfs (`SYSFS_MAGIC`, linux/magic.h).
const SYSFS_MAGIC: i64 = 0x6265_6572;

impl SysfsMapping {
    /// Maps `len` bytes of `file` when it is on sysfs and the kernel lets
    /// it be mapped; `None` otherwise (read it instead).
    fn new(file: &std::fs::File, len: usize) -> Option<Self> {
        use std::os::fd::AsRawFd as _;
        if len == 0 {
            return None;
        }
        // SAFETY: `statfs` is plain data, filled by the call on success.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid open fd and a pointer to a `statfs` we own.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
            return None;
        }
        // `f_type` is i64 on x86_64 but narrower on other architectures.
        #[allow(clippy::useless_conversion)]
        let fs_type = i64::from(fs.f_type);
        if fs_type != SYSFS_MAGIC {
            return None;
        }
        // SAFETY: a fresh private read-only mapping of an open fd; the
        // kernel checks `len` against the file (larger fails, EINVAL).
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(start.cast::<u8>()).map(|start| SysfsMapping { start, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable at `start` for as long as
        // `self` lives (unmapped in `drop`).
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl Drop for SysfsMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made; no slice of it outlives
        // `self` (they borrow it).
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.len);
        }
    }
}

impl Btf {
    /// Reads and indexes the BTF file at `path` (at most 64 MiB): mapped
    /// where it is a sysfs file the kernel lets map (Linux 6.16 and later),
    /// else read.
    pub fn read(path: &Path) -> Result<Self, BtfError> {
        let read_error = |e: std::io::Error| BtfError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // sysfs reports the true size of the BTF file.
        let size_hint = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size_hint > MAX_BTF_BYTES {
            return Err(BtfError::TooLarge);
        }
        let len = usize::try_from(size_hint).unwrap_or(0);
        if let Some(mapping) = SysfsMapping::new(&file, len) {
            return Self::index(Blob::Mapped(mapping));
        }
        let mut bytes = Vec::with_capacity(len);
        file.take(MAX_BTF_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        Self::parse(bytes)
    }

    /// Indexes a BTF blob.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, BtfError> {
        Self::index(Blob::Read(bytes))
    }

    fn index(bytes: Blob) -> Result<Self, BtfError> {
        if bytes.len() as u64 > MAX_BTF_BYTES {
            return Err(BtfError::TooLarge);
        }
        let u16_at = |at: usize| {
            bytes
                .get(at..at + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        };
        if u16_at(0) != Some(BTF_MAGIC) {
            return Err(BtfError::BadMagic);
        }
        let header = |at: usize| u32_at(&bytes, at).map(|v| v as usize);
        let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) =
            (header(4), header(8), header(12), header(16), header(20))
        else {
            return Err(BtfError::BadHeader);
        };
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            let end = start.checked_add(len)?;
            (hdr_len >= HEADER_LEN && end <= bytes.len()).then_some(start..end)
        };
        let (Some(types), Some(strings)) = (section(type_off, type_len), section(str_off, str_len))
        else {
            return Err(BtfError::BadHeader);
        };
        let mut starts = Vec::new();
        let mut at = types.start;
        while at < types.end {
            let id = starts.len() + 1;
            let bad = |why| BtfError::BadType {
                id,
                at: at - types.start,
                why,
            };
            let t = type_header(&bytes[..types.end], at).ok_or_else(|| bad("truncated"))?;
            let extra = match t.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
                _ => return Err(bad("unknown kind")),
            };
            let start = u32::try_from(at).map_err(|_| bad("too far"))?;
            let next = at + TYPE_HEADER_LEN + extra;
            if next > types.end {
                return Err(bad("runs past the type section"));
            }
            starts.push(start);
            at = next;
        }
        Ok(Self {
            bytes,
            types,
            strings,
            starts,
        })
    }

    /// Types in the blob (ids 1..=n).
    #[must_use]
    pub fn type_count(&self) -> usize {
        self.starts.len()
    }

    /// The first struct named `name` that has members (not a forward
    /// declaration).
    #[must_use]
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        (1..=self.starts.len()).find_map(|id| {
            let id = u32::try_from(id).ok()?;
            let t = self.header(id)?;
            (t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == Some(name))
                .then_some(id)
        })
    }

    /// The id of the function named `name` (what an fentry program's
    /// `attach_btf_id` names).
    #[must_use]
    pub fn func_id(&self, name: &str) -> Option<u32> {
        (1..=self.starts.len()).find_map(|id| {
            let id = u32::try_from(id).ok()?;
            let t = self.header(id)?;
            (t.kind == KIND_FUNC && self.name(t.name_off) == Some(name)).then_some(id)
        })
    }

    /// The member `name` of struct `struct_name`, looked for also inside its
    /// anonymous structs and unions; `None` when absent, a bitfield or not
    /// on a byte boundary.
    #[must_use]
    pub fn member(&self, struct_name: &str, name: &str) -> Option<Member> {
        let id = self.struct_id(struct_name)?;
        let mut budget = MAX_MEMBERS_VISITED;
        self.member_in(id, name, 0, 0, &mut budget)
    }

    fn member_in(
        &self,
        id: u32,
        name: &str,
        base_bits: u64,
        depth: u32,
        budget: &mut u32,
    ) -> Option<Member> {
        let t = self.header(id)?;
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            return None;
        }
        let at = self.offset_of(id)? + TYPE_HEADER_LEN;
        for index in 0..t.vlen {
            *budget = budget.checked_sub(1)?;
            let m = at + index * 12;
            let (Some(name_off), Some(type_id), Some(raw_offset)) = (
                u32_at(&self.bytes, m),
                u32_at(&self.bytes, m + 4),
                u32_at(&self.bytes, m + 8),
            ) else {
                return None;
            };
            // With kind_flag, the top 8 bits are a bitfield's size.
            let (bits, bitfield) = if t.kind_flag {
                (raw_offset & 0x00ff_ffff, raw_offset >> 24)
            } else {
                (raw_offset, 0)
            };
            let bits = base_bits + u64::from(bits);
            match self.name(name_off) {
                Some(member) if member == name => {
                    if bitfield != 0 || !bits.is_multiple_of(8) {
                        return None;
                    }
                    return Some(Member {
                        offset: usize::try_from(bits / 8).ok()?,
                        type_id,
                    });
                }
                Some("") if depth < MAX_ANONYMOUS_DEPTH => {
                    let inner = self.resolve(type_id)?;
                    if let Some(found) = self.member_in(inner, name, bits, depth + 1, budget) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// What type `id` is, through typedefs and qualifiers.
    #[must_use]
    pub fn shape(&self, id: u32) -> Shape {
        let Some(id) = self.resolve(id) else {
            return Shape::Other;
        };
        match self.header(id) {
            Some(t) if t.kind == KIND_INT => Shape::Int(t.size_or_type),
            Some(t) if t.kind == KIND_PTR => Shape::Pointer,
            _ => Shape::Other,
        }
    }

    /// `id` with typedefs and qualifiers looked through.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..MAX_TYPE_CHAIN {
            let t = self.header(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(id),
            }
        }
        None
    }

    fn offset_of(&self, id: u32) -> Option<usize> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.starts.get(index).map(|&at| at as usize)
    }

    fn header(&self, id: u32) -> Option<TypeHeader> {
        type_header(&self.bytes[..self.types.end], self.offset_of(id)?)
    }

    /// The NUL-terminated string at `offset` in the string section.
    fn name(&self, offset: u32) -> Option<&str> {
        let start = self.strings.start.checked_add(offset as usize)?;
        let section = self.bytes.get(start..self.strings.end)?;
        let end = section.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&section[..end]).ok()
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn type_header(bytes: &[u8], at: usize) -> Option<TypeHeader> {
    let info = u32_at(bytes, at + 4)?;
    Some(TypeHeader {
        name_off: u32_at(bytes, at)?,
        kind: (info >> 24) & 0x1f,
        vlen: (info & 0xffff) as usize,
        kind_flag: info >> 31 == 1,
        size_or_type: u32_at(bytes, at + 8)?,
    })
}

/// Offsets in `struct task_struct` that the exec hook reads, each `None`
/// when the BTF does not have it where and as expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskOffsets {
    /// `struct task_struct *real_parent`.
    pub real_parent: Option<u16>,
    /// `pid_t tgid` (4 bytes).
    pub tgid: Option<u16>,
    /// `u64 start_boottime` (ns since boot; Linux ≥ 5.5).
    pub start_boottime: Option<u16>,
}

impl TaskOffsets {
    /// The offsets in `btf`, each checked for its type: a pointer, a 4-byte
    /// and an 8-byte integer. An offset that does not fit the programs' u16
    /// (or is `FIELD_ABSENT`) is absent.
    #[must_use]
    pub fn from_btf(btf: &Btf) -> Self {
        let offset = |name: &str, want: Shape| {
            btf.member("task_struct", name)
                .filter(|m| btf.shape(m.type_id) == want)
                .and_then(|m| u16::try_from(m.offset).ok())
                .filter(|&at| at != receiver_common::oom::FIELD_ABSENT)
        };
        Self {
            real_parent: offset("real_parent", Shape::Pointer),
            tgid: offset("tgid", Shape::Int(4)),
            start_boottime: offset("start_boottime", Shape::Int(8)),
        }
    }

    /// The offsets from the kernel's BTF at `path` (see [`VMLINUX_BTF`]).
    pub fn read(path: &Path) -> Result<Self, BtfError> {
        Btf::read(path).map(|btf| Self::from_btf(&btf))
    }

    /// Whether the parent's pid can be read (both offsets known).
    #[must_use]
    pub fn has_parent(&self) -> bool {
        self.real_parent.is_some() && self.tgid.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob in native byte order.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                strings: vec![0],
                next_id: 1,
                ..Self::default()
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            at
        }

        fn push(&mut self, name: &str, kind: u32, vlen: u32, flag: bool, size: u32) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(flag) << 31) | (kind << 24) | vlen;
            for v in [name_off, info, size] {
                self.types.extend_from_slice(&v.to_ne_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let id = self.push(name, KIND_INT, 0, false, bytes);
            self.types.extend_from_slice(&(bytes * 8).to_ne_bytes());
            id
        }

        fn pointer(&mut self, to: u32) -> u32 {
            self.push("", KIND_PTR, 0, false, to)
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.push(name, KIND_TYPEDEF, 0, false, to)
        }

        /// `members`: (name, type, bit offset, bitfield size).
        fn record(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let bitfields = members.iter().any(|m| m.3 != 0);
            let id = self.push(name, kind, members.len() as u32, bitfields, size);
            for (member, type_id, bits, bitfield) in members {
                let name_off = self.string(member);
                let offset = if bitfields {
                    (bitfield << 24) | bits
                } else {
                    *bits
                };
                for v in [name_off, *type_id, offset] {
                    self.types.extend_from_slice(&v.to_ne_bytes());
                }
            }
            id
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
            out.extend_from_slice(&[1, 0]);
            let header = [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ];
            for v in header {
                out.extend_from_slice(&v.to_ne_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A task_struct shaped like the kernel's: `tgid` inside an anonymous
    /// union inside an anonymous struct, the rest at the top.
    fn task_btf() -> Builder {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let u64_int = b.int("long long unsigned int", 8);
        let u64_t = b.typedef("u64", u64_int);
        let pid_t = b.typedef("pid_t", int);
        // A forward declaration first: it must not be taken for the struct.
        b.push("task_struct", KIND_FWD, 0, false, 0);
        let task_id = b.next_id + 3;
        let task_ptr = b.pointer(task_id);
        let inner = b.record(
            KIND_UNION,
            "",
            4,
            &[("tgid", pid_t, 0, 0), ("x", int, 0, 0)],
        );
        let outer = b.record(
            KIND_STRUCT,
            "",
            8,
            &[("pid", pid_t, 0, 0), ("", inner, 32, 0)],
        );
        let task = b.record(
            KIND_STRUCT,
            "task_struct",
            4096,
            &[
                ("state", int, 0, 0),
                ("", outer, 8 * 1264, 0),
                ("real_parent", task_ptr, 8 * 1280, 0),
                ("start_boottime", u64_t, 8 * 1560, 0),
            ],
        );
        assert_eq!(task, task_id);
        b
    }

    #[test]
    fn finds_members_through_anonymous_structs_and_typedefs() {
        let btf = Btf::parse(task_btf().build()).expect("valid BTF");
        assert_eq!(
            TaskOffsets::from_btf(&btf),
            TaskOffsets {
                real_parent: Some(1280),
                tgid: Some(1268),
                start_boottime: Some(1560),
            }
        );
        assert_eq!(
            btf.member("task_struct", "pid").map(|m| m.offset),
            Some(1264)
        );
        assert_eq!(btf.member("task_struct", "nothing"), None);
        assert_eq!(btf.member("mm_struct", "pid"), None);
    }

    #[test]
    fn a_member_of_another_type_or_a_bitfield_is_absent() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let long = b.int("long", 8);
        b.record(
            KIND_STRUCT,
            "task_struct",
            64,
            &[
                // 8 bytes where 4 are read.
                ("tgid", long, 0, 0),
                // Not a pointer.
                ("real_parent", int, 64, 0),
                // A bitfield.
                ("start_boottime", long, 128, 3),
            ],
        );
        let btf = Btf::parse(b.build()).expect("valid BTF");
        assert_eq!(TaskOffsets::from_btf(&btf), TaskOffsets::default());
        assert!(!TaskOffsets::from_btf(&btf).has_parent());
    }

    #[test]
    fn garbled_btf_is_an_error_or_absent_never_a_panic() {
        let good = task_btf().build();
        assert_eq!(Btf::parse(Vec::new()).err(), Some(BtfError::BadMagic));
        assert_eq!(Btf::parse(vec![0; 64]).err(), Some(BtfError::BadMagic));
        let mut header_only = good[..HEADER_LEN].to_vec();
        header_only.truncate(10);
        assert_eq!(Btf::parse(header_only).err(), Some(BtfError::BadHeader));
        // Sections past the end.
        assert_eq!(
            Btf::parse(good[..good.len() - 1].to_vec()).err(),
            Some(BtfError::BadHeader)
        );
        // Every truncation and every single corrupted byte: an error or a
        // result, never a panic.
        for len in 0..good.len() {
            let _ = Btf::parse(good[..len].to_vec()).map(|btf| TaskOffsets::from_btf(&btf));
        }
        for at in 0..good.len() {
            for value in [0x00, 0x01, 0x1f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = value;
                let _ = Btf::parse(bad).map(|btf| TaskOffsets::from_btf(&btf));
            }
        }
        // A typedef that refers to itself ends, absent.
        let mut b = Builder::new();
        let looped = b.typedef("loop", 1);
        b.record(KIND_STRUCT, "task_struct", 8, &[("tgid", looped, 0, 0)]);
        let btf = Btf::parse(b.build()).expect("valid BTF");
        assert_eq!(TaskOffsets::from_btf(&btf).tgid, None);
        // An anonymous member that contains itself ends too, also when
        // there are many of them (bounded work, not 1000^8).
        let mut b = Builder::new();
        b.record(KIND_STRUCT, "task_struct", 8, &[("", 1, 0, 0)]);
        let btf = Btf::parse(b.build()).expect("valid BTF");
        assert_eq!(TaskOffsets::from_btf(&btf), TaskOffsets::default());
        let mut b = Builder::new();
        let many = vec![("", 1, 0, 0); 1000];
        b.record(KIND_STRUCT, "task_struct", 8, &many);
        let btf = Btf::parse(b.build()).expect("valid BTF");
        assert_eq!(TaskOffsets::from_btf(&btf), TaskOffsets::default());
        // An unknown kind stops the parse.
        let mut b = Builder::new();
        b.push("x", 30, 0, false, 0);
        assert!(matches!(
            Btf::parse(b.build()),
            Err(BtfError::BadType {
                id: 1,
                why: "unknown kind",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = TaskOffsets::read(Path::new("/nonexistent/btf/vmlinux")).expect_err("no file");
        assert!(matches!(err, BtfError::Read { .. }), "{err}");
    }

    #[test]
    fn finds_functions_by_name_and_kind() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        // A struct of the same name first: only a FUNC counts.
        b.record(KIND_STRUCT, "oom_kill_process", 4, &[("x", int, 0, 0)]);
        let proto = b.push("", KIND_FUNC_PROTO, 0, false, int);
        let func = b.push("oom_kill_process", KIND_FUNC, 0, false, proto);
        let btf = Btf::parse(b.build()).expect("valid BTF");
        assert_eq!(btf.func_id("oom_kill_process"), Some(func));
        assert_eq!(btf.func_id("mark_oom_victim"), None);
    }

    /// The running kernel's `oom_kill_process` has the id aya's full parse
    /// gives it (the id the fentry hook's probe load names).
    #[test]
    fn the_running_kernels_function_ids_match_ayas() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            println!("SKIPPED: the_running_kernels_function_ids_match_ayas: no {VMLINUX_BTF} (kernel without CONFIG_DEBUG_INFO_BTF)");
            return;
        }
        let ours = Btf::read(path).expect("the kernel's BTF parses");
        let aya = aya::Btf::from_sys_fs().expect("aya parses the kernel's BTF");
        for name in ["oom_kill_process", "mark_oom_victim", "__x64_sys_execve"] {
            let theirs = aya
                .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
                .ok();
            assert_eq!(ours.func_id(name), theirs, "{name}");
        }
        assert!(ours.func_id("oom_kill_process").is_some());
    }

    /// This machine's kernel: every offset found, and where the kernel's
    /// task_struct has them (`tgid` right after `pid`; `real_parent` after
    /// both; all within the struct).
    #[test]
    fn finds_the_running_kernels_task_struct_offsets() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            println!("SKIPPED: finds_the_running_kernels_task_struct_offsets: no {VMLINUX_BTF} (kernel without CONFIG_DEBUG_INFO_BTF)");
            return;
        }
        let btf = Btf::read(path).expect("the kernel's BTF parses");
        assert!(btf.type_count() > 1000, "{} types", btf.type_count());
        let offsets = TaskOffsets::from_btf(&btf);
        let (Some(real_parent), Some(tgid), Some(start)) =
            (offsets.real_parent, offsets.tgid, offsets.start_boottime)
        else {
            panic!("offsets missing: {offsets:?}");
        };
        let pid = btf.member("task_struct", "pid").expect("pid").offset;
        assert_eq!(usize::from(tgid), pid + 4);
        assert!(real_parent > tgid && real_parent % 8 == 0, "{offsets:?}");
        assert!(start % 8 == 0, "{offsets:?}");
        let task = btf.struct_id("task_struct").expect("task_struct");
        let size = btf.header(task).expect("header").size_or_type as usize;
        for at in [real_parent, tgid, start] {
            assert!(usize::from(at) + 8 <= size, "{at} outside {size} bytes");
        }
    }

    /// Linux 6.16 and later let the sysfs BTF be mapped: then it is, and
    /// what is found there is what reading the file finds.
    #[test]
    fn the_running_kernels_btf_is_mapped_where_sysfs_allows_and_agrees_with_a_read() {
        const TEST: &str =
            "the_running_kernels_btf_is_mapped_where_sysfs_allows_and_agrees_with_a_read";
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            println!("SKIPPED: {TEST}: no {VMLINUX_BTF}");
            return;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        let mapped = Btf::read(path).expect("the kernel's BTF parses");
        let read = Btf::parse(std::fs::read(path).expect("read the BTF")).expect("parses");
        assert_eq!(
            matches!(mapped.bytes, Blob::Mapped(_)),
            version >= (6, 16),
            "Linux {release}: {:?}",
            mapped.bytes
        );
        assert_eq!(&mapped.bytes[..], &read.bytes[..]);
        assert_eq!(mapped.type_count(), read.type_count());
        assert_eq!(TaskOffsets::from_btf(&mapped), TaskOffsets::from_btf(&read));
        assert_eq!(
            mapped.func_id("oom_kill_process"),
            read.func_id("oom_kill_process")
        );
    }
}
