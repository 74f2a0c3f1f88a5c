//! Exporters: where data leaves. Each is an [`helper::ExportClient`] wrapped
//! by the shared exporter helper (sending queue, retry, timeout, telemetry,
//! acknowledgements), like the collector's exporterhelper.

pub mod debug;
pub mod file;
pub mod helper;
pub mod otlp_grpc;
pub mod otlp_http;
// Public for the fuzz targets' JSON round trip (`fuzz/`).
#[doc(hidden)]
pub mod otlp_json;
pub mod tls;

use tokio::task::JoinHandle;

use crate::component::BuildContext;
use crate::config::{from_node, ConfigError, Node};
use crate::pipeline::DynConsumer;

#[derive(Debug, Clone)]
pub enum ExporterConfig {
    OtlpGrpc(otlp_grpc::OtlpGrpcExporterConfig),
    OtlpHttp(otlp_http::OtlpHttpExporterConfig),
    File(file::FileExporterConfig),
    Debug(debug::DebugExporterConfig),
}

impl ExporterConfig {
    /// `otlp`/`otlp_grpc` and `otlphttp`/`otlp_http`: the collector renamed
    /// these; both spellings are accepted.
    pub const TYPES: &'static [&'static str] = &[
        "debug",
        "file",
        "otlp",
        "otlp_grpc",
        "otlp_http",
        "otlphttp",
    ];

    pub fn from_node(type_name: &str, node: &Node) -> Option<Result<Self, ConfigError>> {
        Some(match type_name {
            "otlp" | "otlp_grpc" => from_node(node).map(ExporterConfig::OtlpGrpc),
            "otlphttp" | "otlp_http" => from_node(node).map(ExporterConfig::OtlpHttp),
            "file" => from_node(node).map(ExporterConfig::File),
            "debug" => from_node(node).map(ExporterConfig::Debug),
            _ => return None,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            ExporterConfig::OtlpGrpc(c) => c.validate(),
            ExporterConfig::OtlpHttp(c) => c.validate(),
            ExporterConfig::File(c) => c.validate(),
            ExporterConfig::Debug(c) => c.validate(),
        }
    }

    /// The `file_storage` extension a persistent sending queue uses, if any.
    /// Every exporter's queue is the exporter helper's, so every one can be
    /// persistent.
    pub fn storage(&self) -> Option<&crate::config::ComponentId> {
        let queue = match self {
            ExporterConfig::OtlpGrpc(c) => &c.sending_queue,
            ExporterConfig::OtlpHttp(c) => &c.sending_queue,
            ExporterConfig::File(c) => &c.sending_queue,
            ExporterConfig::Debug(c) => &c.sending_queue,
        };
        queue.storage.as_ref()
    }

    /// Builds the one instance shared by every pipeline that names this
    /// exporter (both signals go through it). The task ends after the consumer
    /// is dropped and the queue is drained (or, for a persistent queue, left
    /// on disk), or when the shutdown deadline passes.
    pub async fn build(&self, ctx: &BuildContext) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
        match self {
            ExporterConfig::OtlpGrpc(c) => otlp_grpc::build(c, ctx).await,
            ExporterConfig::OtlpHttp(c) => otlp_http::build(c, ctx).await,
            ExporterConfig::File(c) => file::build(c, ctx).await,
            ExporterConfig::Debug(c) => debug::build(c, ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentId;

    #[test]
    fn every_exporter_reports_its_queue_storage() {
        let storage = ComponentId::new("file_storage", Some("q"));
        let queue = helper::QueueConfig {
            storage: Some(storage.clone()),
            ..helper::QueueConfig::default()
        };
        let configs = [
            ExporterConfig::OtlpGrpc(otlp_grpc::OtlpGrpcExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            ExporterConfig::OtlpHttp(otlp_http::OtlpHttpExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            ExporterConfig::File(file::FileExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            ExporterConfig::Debug(debug::DebugExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
        ];
        for c in &configs {
            assert_eq!(c.storage(), Some(&storage), "{c:?}");
        }
        let plain = ExporterConfig::File(file::FileExporterConfig::default());
        assert_eq!(plain.storage(), None);
    }
}
