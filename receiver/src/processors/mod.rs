//! Processors: per-pipeline steps between receivers and exporters. Each
//! registers its factory in `crate::components`.

pub mod batch;
pub mod memory_limiter;
pub mod resource;
