//! `cgroups: {include, exclude}`: which cgroups a receiver reports, by glob
//! over the cgroup path as /proc/PID/cgroup writes it (`/kubepods/**`). One
//! matcher for every receiver: `*` stays within one path segment, `**`
//! crosses segments; with `include` set only matching paths pass, and
//! `exclude` removes paths whatever `include` says.

use serde::Deserialize;

use crate::config::ValidationError;

/// The `cgroups` block of receivers that filter by cgroup only.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupFilterConfig {
    /// Cgroup path globs; when set, only matching cgroups pass.
    pub include: Vec<String>,
    /// Cgroup path globs that never pass.
    pub exclude: Vec<String>,
}

impl CgroupFilterConfig {
    /// Checks the globs; keys are relative to the block.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_globs(&self.include, &self.exclude)
    }
}

/// Every glob of `include` and `exclude` parses.
pub fn validate_globs(include: &[String], exclude: &[String]) -> Result<(), ValidationError> {
    for (key, globs) in [("include", include), ("exclude", exclude)] {
        for g in globs {
            glob::Pattern::new(g)
                .map_err(|e| ValidationError::at(key, format!("invalid glob {g:?}: {e}")))?;
        }
    }
    Ok(())
}

/// The compiled filter.
#[derive(Debug, Clone, Default)]
pub struct CgroupFilter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl CgroupFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<CgroupFilter, String> {
        let globs = |key: &str, list: &[String]| -> Result<Vec<glob::Pattern>, String> {
            list.iter()
                .map(|g| {
                    glob::Pattern::new(g)
                        .map_err(|e| format!("cgroups::{key}: invalid glob {g:?}: {e}"))
                })
                .collect()
        };
        Ok(CgroupFilter {
            include: globs("include", include)?,
            exclude: globs("exclude", exclude)?,
        })
    }

    /// Whether the filter lets everything pass.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `include` is set (a path must then be known to pass).
    pub fn has_include(&self) -> bool {
        !self.include.is_empty()
    }

    /// Whether cgroup `path` passes.
    pub fn selected(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches_with(path, MATCH)))
            && !self.exclude.iter().any(|p| p.matches_with(path, MATCH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let f = CgroupFilter::new(
            &["/oomscope-fleet/node-07/**".to_string()],
            &["/oomscope-fleet/node-07/quiet/**".to_string()],
        )
        .expect("globs");
        assert!(f.selected("/oomscope-fleet/node-07/kill-1"));
        assert!(f.selected("/oomscope-fleet/node-07/a/b"));
        assert!(!f.selected("/oomscope-fleet/node-08/kill-1"));
        assert!(!f.selected("/oomscope-fleet/node-07/quiet/x"));
        assert!(!f.selected("/"));
        let star = CgroupFilter::new(&["/kubepods/*".to_string()], &[]).expect("globs");
        assert!(star.selected("/kubepods/burstable"));
        assert!(
            !star.selected("/kubepods/burstable/pod1"),
            "* stays in a segment"
        );
        assert!(CgroupFilter::default().selected("/anything"));
        assert!(CgroupFilter::new(&["[".to_string()], &[]).is_err());
    }
}
