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

    #[test]
    fn raising_own_score_works_unprivileged() {
        // Raising is always allowed; lowering below the inherited value needs
        // CAP_SYS_RESOURCE, so only check a raise in a child process.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj")
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "500");
        assert!(oom_score_adj().is_ok());
    }
}
