//! Reads the kernel's own "Killed process" line for a pid from /dev/kmsg,
//! independently of oomscope's parser, so tests compare against the kernel.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::{machine_lock, LockMode, MachineLock};

/// The kernel's log ring buffer, shared by every test that reads records
/// back from /dev/kmsg (their own writes, their kills' reports) and held
/// exclusively by a test that overruns it on purpose.
pub fn kernel_log_lock(mode: LockMode) -> MachineLock {
    machine_lock("kernel-log", mode)
}

/// Writes one record to the kernel log (`<priority>text\n`). A fresh
/// descriptor per record: user writes are rate-limited per open file
/// (`printk_devkmsg=ratelimit`).
pub fn write_kmsg(line: &str) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut kmsg| kmsg.write_all(line.as_bytes()))
        .expect("write /dev/kmsg");
}

/// The figures of one "Killed process" line, in kB as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KilledLine {
    pub comm: String,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    pub pgtables_kb: Option<u64>,
    /// The whole message.
    pub line: String,
}

fn field(msg: &str, key: &str) -> Option<u64> {
    let rest = &msg[msg.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Every record currently in the kernel log (non-blocking read to the end).
pub fn kernel_messages() -> Vec<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .expect("open /dev/kmsg");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some((_, msg)) = rec.split_once(';') {
                    out.push(msg.lines().next().unwrap_or_default().to_string());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // Overwritten records: the position moves on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => panic!("read /dev/kmsg: {e}"),
        }
    }
    out
}

/// Waits for the kernel's "Killed process <pid> (...)" line.
pub fn killed_line(pid: i32, timeout: Duration) -> KilledLine {
    let deadline = Instant::now() + timeout;
    let needle = format!("Killed process {pid} (");
    loop {
        if let Some(msg) = kernel_messages()
            .into_iter()
            .rev()
            .find(|m| m.contains(&needle))
        {
            let comm_start = msg.find(&needle).map(|i| i + needle.len()).unwrap_or(0);
            let comm = msg[comm_start..]
                .split(')')
                .next()
                .unwrap_or_default()
                .to_string();
            return KilledLine {
                comm,
                total_vm_kb: field(&msg, "total-vm:").expect("total-vm"),
                anon_rss_kb: field(&msg, "anon-rss:").expect("anon-rss"),
                file_rss_kb: field(&msg, "file-rss:").expect("file-rss"),
                shmem_rss_kb: field(&msg, "shmem-rss:").expect("shmem-rss"),
                pgtables_kb: field(&msg, "pgtables:"),
                line: msg,
            };
        }
        assert!(
            Instant::now() < deadline,
            "no 'Killed process {pid}' line in the kernel log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
