//! The agent must outlive what it reports on: lower its own OOM score.

use std::path::Path;

/// Writes `adj` to `/proc/self/oom_score_adj`. Lowering it needs
/// CAP_SYS_RESOURCE; without it the kernel refuses and the agent goes on with
/// a warning (it still works, it is just not protected).
pub fn set_oom_score_adj(adj: i32) -> std::io::Result<()> {
    set_oom_score_adj_at(Path::new("/proc/self/oom_score_adj"), adj)
}

fn set_oom_score_adj_at(path: &Path, adj: i32) -> std::io::Result<()> {
    if !(-1000..=1000).contains(&adj) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("oom_score_adj {adj} is outside -1000..=1000"),
        ));
    }
    std::fs::write(path, format!("{adj}\n"))
}

/// The current value, for logs and tests.
pub fn oom_score_adj() -> std::io::Result<i32> {
    let text = std::fs::read_to_string("/proc/self/oom_score_adj")?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("adj");
        assert!(set_oom_score_adj_at(&f, -1001).is_err());
        assert!(set_oom_score_adj_at(&f, 1001).is_err());
        set_oom_score_adj_at(&f, -900).expect("write");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "-900\n");
    }

    /// The real file: raise a child's score through `set_oom_score_adj_at`
    /// and read it back (raising needs no privilege).
    #[test]
    fn raising_a_real_process_score_works_unprivileged() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let path = std::path::PathBuf::from(format!("/proc/{}/oom_score_adj", child.id()));
        let before: i32 = std::fs::read_to_string(&path)
            .expect("read")
            .trim()
            .parse()
            .expect("a number");
        let raised = (before + 100).min(1000);
        let written = set_oom_score_adj_at(&path, raised);
        let after = std::fs::read_to_string(&path).map(|t| t.trim().to_string());
        let _ = child.kill();
        let _ = child.wait();
        written.expect("raising is allowed");
        assert_eq!(after.ok(), Some(raised.to_string()));
        assert!(oom_score_adj().is_ok());
    }
}
