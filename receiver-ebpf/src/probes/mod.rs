//! One probe per file.

pub mod mark_victim;
