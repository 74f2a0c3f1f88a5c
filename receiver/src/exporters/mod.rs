//! Exporters: where data leaves. Each is an [`helper::ExportClient`] wrapped
//! by the shared exporter helper (sending queue, retry, timeout, telemetry,
//! acknowledgements), like the collector's exporterhelper. Each registers its
//! factory in `crate::components`.

pub mod debug;
pub mod file;
pub mod helper;
pub mod otlp_grpc;
pub mod otlp_http;
// Public for the fuzz targets' JSON round trip (`fuzz/`).
#[doc(hidden)]
pub mod otlp_json;
/// TLS moved to `crate::tls`, shared with the receivers.
pub use crate::tls;

#[cfg(test)]
mod tests {
    use crate::component::{ComponentConfig, Reference};
    use crate::config::ComponentId;

    use super::*;

    #[test]
    fn every_exporter_reports_its_queue_storage() {
        let storage = ComponentId::new("file_storage", Some("q"));
        let queue = helper::QueueConfig {
            storage: Some(storage.clone()),
            ..helper::QueueConfig::default()
        };
        let configs: [Box<dyn ComponentConfig>; 4] = [
            Box::new(otlp_grpc::OtlpGrpcExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            Box::new(otlp_http::OtlpHttpExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            Box::new(file::FileExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
            Box::new(debug::DebugExporterConfig {
                sending_queue: queue.clone(),
                ..Default::default()
            }),
        ];
        let want = [Reference::file_storage(
            "sending_queue::storage",
            &storage,
            "a persistent sending queue needs a file_storage extension",
        )];
        for c in &configs {
            assert_eq!(c.references(), want, "{c:?}");
        }
        let plain = file::FileExporterConfig::default();
        assert_eq!(plain.references(), []);
    }
}
