//! Pattern library throughput: the whole built-in library
//! (`Library::match_line`) against the in-process equivalent of
//! `grep -E 'Killed process|out of memory|OutOfMemoryError'` (one
//! `regex::bytes::Regex`), over a generated syslog mix in which 1 line in
//! 10,000 is an OOM message.
//!
//! `cargo bench -p oomscope --bench patterns`; compare the two `thrpt` lines.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oomscope::patterns::Library;

const LINES: usize = 100_000;
const MATCH_EVERY: usize = 10_000;

/// Ordinary syslog traffic, varied by a cheap deterministic generator.
fn syslog_mix() -> Vec<String> {
    let templates = [
        "sshd[{pid}]: Accepted publickey for deploy from 10.0.{a}.{b} port {port} ssh2: ED25519 SHA256:Zk3v{a}q{b}",
        "systemd[1]: Started Session {pid} of User deploy.",
        "CRON[{pid}]: (root) CMD (/usr/local/bin/backup --incremental --target s3://bucket-{a}/db)",
        "kernel: [{pid}.{port}] IPv4: martian source 10.0.{a}.{b} from 10.0.{b}.{a}, on dev eth0",
        "nginx[{pid}]: 10.0.{a}.{b} - - \"GET /api/v1/items/{port}?page={a} HTTP/1.1\" 200 {port} \"-\" \"curl/8.5.0\"",
        "dockerd[{pid}]: time=\"2026-11-27T05:01:02.{port}Z\" level=info msg=\"ignoring event\" module=libcontainerd namespace=moby topic=/tasks/delete",
        "postgres[{pid}]: LOG:  checkpoint complete: wrote {port} buffers ({a}.{b}%); 0 WAL file(s) added, 0 removed, {a} recycled",
        "app[{pid}]: INFO request_id={port}{a} user={b} latency_ms={a} cache=hit memory_used_mb={port}",
    ];
    let oom = [
        "kernel: Memory cgroup out of memory: Killed process {pid} (java) total-vm:4475840kB, anon-rss:1913012kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4096kB oom_score_adj:0",
        "app[{pid}]: Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
        "app[{pid}]: fatal error: runtime: out of memory",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..LINES)
        .map(|i| {
            let r = next();
            let template = if i % MATCH_EVERY == MATCH_EVERY - 1 {
                oom[(i / MATCH_EVERY) % oom.len()]
            } else {
                templates[(r % templates.len() as u64) as usize]
            };
            let body = template
                .replace("{pid}", &(r % 65_536).to_string())
                .replace("{port}", &((r >> 16) % 60_000).to_string())
                .replace("{a}", &((r >> 32) % 256).to_string())
                .replace("{b}", &((r >> 40) % 256).to_string());
            format!("Nov 27 05:01:{:02} web-{} {body}", i % 60, r % 8)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let lines = syslog_mix();
    let library = Library::builtin();
    let anchor = match regex::bytes::Regex::new("Killed process|out of memory|OutOfMemoryError") {
        Ok(r) => r,
        Err(e) => panic!("anchor regex: {e}"),
    };
    let library_matches = lines
        .iter()
        .filter(|l| library.match_line(l).is_some())
        .count();
    let anchor_matches = lines
        .iter()
        .filter(|l| anchor.is_match(l.as_bytes()))
        .count();
    assert_eq!(library_matches, LINES / MATCH_EVERY);
    assert_eq!(anchor_matches, LINES / MATCH_EVERY);

    let mut group = c.benchmark_group("patterns");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("library_match_line", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| library.match_line(black_box(l)).is_some())
                .count()
        })
    });
    group.bench_function("anchor_single_regex_is_match", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| anchor.is_match(black_box(l.as_bytes())))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
