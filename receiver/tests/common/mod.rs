//! Shared helpers for the integration tests. Each test crate uses a subset.
#![allow(dead_code)]

pub mod oom;
