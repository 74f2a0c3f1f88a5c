//! Every component oomscope has, by kind: the one place a new component is
//! registered (the collector's `components.go`).

use crate::component::{Kind, Registry, Retired};
use crate::{exporters, extensions, processors, receivers};

static REGISTRY: Registry = Registry {
    receivers: &[
        &receivers::filelog::FilelogReceiverFactory,
        #[cfg(feature = "journald")]
        &receivers::journald::JournaldReceiverFactory,
        &receivers::kmsg::KmsgReceiverFactory,
        &receivers::memory::MemoryReceiverFactory,
        &receivers::oom::OomReceiverFactory,
        &receivers::otlp::OtlpReceiverFactory,
    ],
    processors: &[
        &processors::batch::BatchProcessorFactory,
        &processors::memory_limiter::MemoryLimiterProcessorFactory,
        &processors::resource::ResourceProcessorFactory,
    ],
    exporters: &[
        &exporters::debug::DebugExporterFactory,
        &exporters::file::FileExporterFactory,
        &exporters::otlp_grpc::OtlpGrpcExporterFactory,
        &exporters::otlp_http::OtlpHttpExporterFactory,
    ],
    extensions: &[
        &extensions::auth::basicauth::BasicAuthExtensionFactory,
        &extensions::auth::bearertokenauth::BearerTokenAuthExtensionFactory,
        &extensions::file_storage::FileStorageExtensionFactory,
        &extensions::auth::headers_setter::HeadersSetterExtensionFactory,
        &extensions::health_check::HealthCheckExtensionFactory,
        &extensions::status::StatusExtensionFactory,
    ],
    retired: &[Retired {
        kind: Kind::Exporter,
        type_name: "logging",
        message: "the logging exporter has been deprecated, use the debug exporter instead",
    }],
};

/// The registry the agent loads its configuration with.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

#[cfg(test)]
mod config_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_consistent() {
        assert_eq!(registry().check(), Ok(()));
        assert_eq!(
            registry().receiver("file_log").map(|f| f.type_name()),
            Some("filelog")
        );
        assert_eq!(
            registry().exporter("otlp").map(|f| f.type_name()),
            Some("otlp_grpc")
        );
        assert_eq!(
            registry().exporter("otlphttp").map(|f| f.type_name()),
            Some("otlp_http")
        );
        assert!(registry().receiver("logging").is_none());
    }
}
