//! oomscope's own gRPC API, `oomscope.v1` (`proto/oomscope/v1/events.proto`):
//! a live stream of OOM kills, the recent incidents and a snapshot of the
//! host's memory, for local tools (`oomscope events`, `oomscope top`).
//!
//! The Rust code for the schema is generated once and committed
//! (`oomscope.v1.rs`), like opentelemetry-proto does: builds need neither
//! protoc nor a code generator, and a review shows what the API looks like.
//! The test `generated_code_is_current` regenerates it with the pure-Rust
//! protox compiler and tonic-prost-build, and fails (rewriting the file) when
//! it is stale, so a changed `.proto` cannot go unnoticed.

pub mod events;
pub mod incidents;

/// The generated messages, client (`oom_events_client`) and server
/// (`oom_events_server`) of `oomscope.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!("oomscope.v1.rs");
}

pub use events::{connect, serve, serve_listener, EventsEndpoint, EventsListener, OomEventHub};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Regenerates `oomscope.v1.rs` from the `.proto` and compares it with the
    /// committed file. On a difference the file is rewritten (so that
    /// `git diff` shows the change) and the test fails: commit the new file.
    #[test]
    fn generated_code_is_current() {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let proto_dir = manifest_dir.join("../proto");
        let committed_path = manifest_dir.join("src/api/oomscope.v1.rs");

        let descriptors = protox::compile(["oomscope/v1/events.proto"], [&proto_dir])
            .unwrap_or_else(|e| panic!("compiling {}: {e:?}", proto_dir.display()));
        let out_dir = tempfile::tempdir().expect("temporary directory");
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            // The status page serves these messages as its JSON.
            .type_attribute(".oomscope.v1", "#[derive(serde::Serialize)]")
            .out_dir(out_dir.path())
            .compile_fds(descriptors)
            .expect("generating Rust code for oomscope.v1");
        let generated = std::fs::read_to_string(out_dir.path().join("oomscope.v1.rs"))
            .expect("reading the generated code");
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        if generated != committed {
            std::fs::write(&committed_path, &generated).expect("rewriting the generated code");
            panic!(
                "{} was stale and has been regenerated from proto/; review and commit it",
                committed_path.display()
            );
        }
    }
}
