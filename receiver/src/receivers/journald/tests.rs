//! Tests on real journal files.
