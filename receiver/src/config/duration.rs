//! Durations written the collector's (Go's) way: `5s`, `200ms`, `1m30s`, `1.5h`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    pub const fn from_secs(s: u64) -> Self {
        GoDuration(Duration::from_secs(s))
    }

    pub const fn from_millis(ms: u64) -> Self {
        GoDuration(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses Go's `time.ParseDuration` syntax. A bare `0` is allowed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let err = || {
            format!("invalid duration {s:?} (expected a number with a unit: ns, us, ms, s, m, h; for example 5s or 1m30s)")
        };
        if s == "0" {
            return Ok(GoDuration::ZERO);
        }
        if s.is_empty() || s.starts_with('-') {
            return Err(err());
        }
        let mut total = 0f64;
        let mut rest = s.strip_prefix('+').unwrap_or(s);
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let nanos_per_unit = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total += value * nanos_per_unit;
        }
        if !total.is_finite() || total > u64::MAX as f64 {
            return Err(err());
        }
        Ok(GoDuration(Duration::from_nanos(total as u64)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 5s, 200ms or 1m30s")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GoDuration, E> {
                GoDuration::parse(v).map_err(E::custom)
            }
            /// Integers are nanoseconds, as in the collector.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_nanos(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GoDuration, E> {
                u64::try_from(v)
                    .map(|n| GoDuration(Duration::from_nanos(n)))
                    .map_err(|_| E::custom("a duration must not be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(GoDuration::parse("5s"), Ok(GoDuration::from_secs(5)));
        assert_eq!(GoDuration::parse("200ms"), Ok(GoDuration::from_millis(200)));
        assert_eq!(GoDuration::parse("1m30s"), Ok(GoDuration::from_secs(90)));
        assert_eq!(GoDuration::parse("1.5h"), Ok(GoDuration::from_secs(5400)));
        assert_eq!(GoDuration::parse("0"), Ok(GoDuration::ZERO));
        assert!(GoDuration::parse("5").is_err());
        assert!(GoDuration::parse("5 sec").is_err());
        assert!(GoDuration::parse("-1s").is_err());
        assert!(GoDuration::parse("").is_err());
    }
}
