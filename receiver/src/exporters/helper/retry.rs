//! `retry_on_failure`: its settings and their checks, apart from the retry
//! loop that uses them (`Core::export_with_retry`) and the waits between
//! attempts (`backoff`).

use serde::Deserialize;

use crate::config::{GoDuration, ValidationError};

/// `retry_on_failure`, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub max_interval: GoDuration,
    /// 0 retries forever.
    pub max_elapsed_time: GoDuration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: GoDuration::from_secs(5),
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    pub fn disabled() -> Self {
        RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        }
    }

    /// The collector's configretry rules; errors name keys inside
    /// `retry_on_failure`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.multiplier < 1.0 || !self.multiplier.is_finite() {
            return Err(ValidationError::at("multiplier", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(ValidationError::at(
                "randomization_factor",
                "must be between 0 and 1",
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        // A zero wait would spin.
        if self.initial_interval.is_zero() {
            return Err(ValidationError::at(
                "initial_interval",
                "must be greater than zero",
            ));
        }
        if self.max_interval.get() < self.initial_interval.get() {
            return Err(ValidationError::at(
                "max_interval",
                format!(
                    "({}) must be at least initial_interval ({})",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        let max_elapsed = self.max_elapsed_time.get();
        if !max_elapsed.is_zero() && max_elapsed < self.max_interval.get() {
            return Err(ValidationError::at(
                "max_elapsed_time",
                format!(
                    "({}) must be 0 (retry forever) or at least max_interval ({})",
                    self.max_elapsed_time, self.max_interval
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_settings_are_checked() {
        assert!(RetryConfig::default().validate().is_ok());

        let retry = |initial: u64, max: u64, elapsed: u64| RetryConfig {
            initial_interval: GoDuration::from_millis(initial),
            max_interval: GoDuration::from_millis(max),
            max_elapsed_time: GoDuration::from_millis(elapsed),
            ..RetryConfig::default()
        };
        assert!(retry(10, 50, 60_000).validate().is_ok());
        assert!(retry(10, 50, 0).validate().is_ok(), "0 retries forever");
        assert!(retry(50, 50, 50).validate().is_ok());
        let err = retry(0, 50, 1000)
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("initial_interval"), "{err}");
        let err = retry(100, 50, 1000)
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("max_interval"), "{err}");
        let err = retry(10, 500, 100)
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("max_elapsed_time"), "{err}");
        // Not checked when retries are off.
        let off = RetryConfig {
            enabled: false,
            ..retry(0, 0, 1)
        };
        assert!(off.validate().is_ok());
    }
}
