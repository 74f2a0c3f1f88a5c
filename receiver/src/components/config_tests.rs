//! The shipped components through the config loader: graph checks,
//! references, positions and messages as a user sees them.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::component::ExporterConfig;
use crate::config::{
    load_files, load_files_with_env, load_str_with_env, ComponentId, Config, ConfigErrors,
    GoDuration, PipelineConfig, PipelineId, TelemetryConfig, DEFAULT_OOM_SCORE_ADJ,
};
use crate::exporters::otlp_grpc::OtlpGrpcExporterConfig;
use crate::exporters::otlp_http::OtlpHttpExporterConfig;
use crate::pipeline::Signal;

/// The concrete config of exporter `id`.
fn exporter<'a, T: 'static>(config: &'a Config, id: &ComponentId) -> Option<&'a T> {
    let exporter: &dyn ExporterConfig = config.exporters.get(id)?.as_ref();
    (exporter as &dyn std::any::Any).downcast_ref::<T>()
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(super::registry(), "c.yaml", text, &|_| None)
}

fn errors(text: &str) -> Vec<String> {
    load(text)
        .expect_err("must be invalid")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn id(s: &str) -> ComponentId {
    s.parse().expect("valid id")
}

const VALID: &str = "\
receivers:
  otlp: {protocols: {grpc: }}
processors:
  batch:
exporters:
  debug:
  otlp/2:
    endpoint: localhost:4317
    sending_queue:
      storage: file_storage/queue
extensions:
  health_check:
  file_storage/queue:
service:
  extensions: [health_check, file_storage/queue]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, otlp/2]
    metrics/oom:
      receivers: [otlp]
      exporters: [debug]
";

#[test]
fn loads_a_valid_config_with_defaults() {
    let config = load(VALID).expect("valid");
    assert_eq!(
        config.receivers.keys().cloned().collect::<Vec<_>>(),
        [id("otlp")]
    );
    assert_eq!(
        config.processors.keys().cloned().collect::<Vec<_>>(),
        [id("batch")]
    );
    assert_eq!(
        config.exporters.keys().cloned().collect::<Vec<_>>(),
        [id("debug"), id("otlp/2")]
    );
    assert_eq!(
        exporter::<OtlpGrpcExporterConfig>(&config, &id("otlp/2"))
            .and_then(|e| e.sending_queue.storage.as_ref()),
        Some(&id("file_storage/queue"))
    );
    assert_eq!(
        config.service.extensions,
        [id("health_check"), id("file_storage/queue")]
    );
    let logs = PipelineId {
        signal: Signal::Logs,
        name: None,
    };
    let oom = PipelineId {
        signal: Signal::Metrics,
        name: Some("oom".into()),
    };
    assert_eq!(
        config.service.pipelines.get(&logs),
        Some(&PipelineConfig {
            receivers: vec![id("otlp")],
            processors: vec![id("batch")],
            exporters: vec![id("debug"), id("otlp/2")],
        })
    );
    assert_eq!(
        config
            .service
            .pipelines
            .get(&oom)
            .map(|p| p.exporters.clone()),
        Some(vec![id("debug")])
    );
    assert_eq!(config.service.oom_score_adj, Some(DEFAULT_OOM_SCORE_ADJ));
    assert_eq!(config.service.shutdown_timeout, GoDuration::from_secs(10));
    assert_eq!(config.service.telemetry, TelemetryConfig::default());
}

/// `service.telemetry` as the collector's documentation writes it
/// (https://opentelemetry.io/docs/collector/internal-telemetry/ and
/// opentelemetry-collector docs/observability.md).
#[test]
fn telemetry_readers_and_resource_decode_as_the_collector_writes_them() {
    use crate::config::{MetricReader, MetricsLevel, OtlpProtocol};
    let with = |extra: &str| format!("{VALID}  {extra}\n");
    let config = load(&with(
        "telemetry:
    resource:
      deployment.environment.name: test
      service.instance.id: null
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: '0.0.0.0'
                port: 8888
                without_units: true
        - periodic:
            interval: 5000
            exporter:
              otlp:
                protocol: grpc
                endpoint: https://backend:4317",
    ))
    .expect("valid");
    let telemetry = &config.service.telemetry;
    assert_eq!(telemetry.metrics.level, MetricsLevel::Detailed);
    assert_eq!(
        telemetry.resource.0.get("deployment.environment.name"),
        Some(&Some("test".to_string()))
    );
    assert_eq!(telemetry.resource.0.get("service.instance.id"), Some(&None));
    let readers = telemetry.metrics.effective_readers();
    assert_eq!(readers.len(), 2);
    let MetricReader::Pull { pull } = &readers[0] else {
        panic!("pull first: {readers:?}");
    };
    assert_eq!(pull.exporter.prometheus.bind_address(), "0.0.0.0:8888");
    let MetricReader::Periodic { periodic } = &readers[1] else {
        panic!("periodic second: {readers:?}");
    };
    assert_eq!(periodic.interval.0, GoDuration::from_millis(5000));
    assert_eq!(periodic.exporter.otlp.protocol, OtlpProtocol::Grpc);
    assert_eq!(
        periodic.exporter.otlp.endpoint_url(),
        "https://backend:4317"
    );

    // The declarative form of the resource; an endpoint without a scheme
    // is https unless insecure, as the collector normalizes it.
    let config = load(&with(
        "telemetry: {resource: {attributes: [{name: a, value: b}]}, metrics: {readers: [{periodic: {exporter: {otlp: {endpoint: 'localhost:4317', insecure: true}}}}]}}",
    ))
    .expect("valid");
    assert_eq!(
        config.service.telemetry.resource.0.get("a"),
        Some(&Some("b".to_string()))
    );
    let readers = config.service.telemetry.metrics.effective_readers();
    let MetricReader::Periodic { periodic } = &readers[0] else {
        panic!("{readers:?}");
    };
    assert_eq!(
        periodic.exporter.otlp.endpoint_url(),
        "http://localhost:4317"
    );
    assert_eq!(periodic.interval.0, GoDuration::from_secs(60));

    // Defaults: one pull reader on 127.0.0.1:8888; the deprecated address
    // replaces it; level none has no reader.
    let readers = load(VALID)
        .expect("valid")
        .service
        .telemetry
        .metrics
        .effective_readers();
    let [MetricReader::Pull { pull }] = readers.as_slice() else {
        panic!("{readers:?}");
    };
    assert_eq!(pull.exporter.prometheus.bind_address(), "127.0.0.1:8888");
    let readers = load(&with("telemetry: {metrics: {address: 'localhost:6666'}}"))
        .expect("valid")
        .service
        .telemetry
        .metrics
        .effective_readers();
    let [MetricReader::Pull { pull }] = readers.as_slice() else {
        panic!("{readers:?}");
    };
    assert_eq!(pull.exporter.prometheus.bind_address(), "localhost:6666");
    let none = load(&with("telemetry: {metrics: {level: none}}")).expect("valid");
    assert!(none
        .service
        .telemetry
        .metrics
        .effective_readers()
        .is_empty());

    for (bad, key) in [
        ("metrics: {readers: []}", "metrics::readers"),
        ("metrics: {readers: [{pull: {exporter: {prometheus: {port: 1}}}, periodic: {exporter: {otlp: {endpoint: x}}}}]}", "metrics::readers"),
        ("metrics: {readers: [{push: {}}]}", "metrics::readers"),
        ("metrics: {readers: [{pull: {exporter: {prometheus: {port: 1, without_type_suffix: false}}}}]}", "metrics::readers::0::pull::exporter::prometheus::without_type_suffix"),
        ("metrics: {readers: [{periodic: {exporter: {otlp: {protocol: http/xml, endpoint: x}}}}]}", "metrics::readers"),
        ("metrics: {readers: [{periodic: {interval: 0, exporter: {otlp: {endpoint: x}}}}]}", "metrics::readers"),
    ] {
        let e = errors(&with(&format!("telemetry: {{{bad}}}")));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].contains(&format!("'service::telemetry::{key}")),
            "{bad}: {e:?}"
        );
    }
    // http/* pushes go to the endpoint's path, else /v1/metrics.
    let url = |protocol: &str, endpoint: &str| {
        let config = load(&with(&format!(
            "telemetry: {{metrics: {{readers: [{{periodic: {{exporter: {{otlp: {{protocol: {protocol}, endpoint: '{endpoint}', insecure: true}}}}}}}}]}}}}"
        )))
        .expect("valid");
        match &config.service.telemetry.metrics.effective_readers()[0] {
            MetricReader::Periodic { periodic } => periodic.exporter.otlp.http_metrics_url(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        url("http/protobuf", "collector:4318"),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(
        url("http/json", "https://c:4318/"),
        "https://c:4318/v1/metrics"
    );
    assert_eq!(
        url("http/json", "https://c:4318/custom/path"),
        "https://c:4318/custom/path"
    );
    let e = errors(&with("telemetry: {resource: {a: [1]}}"));
    assert!(
        e.len() == 1 && e[0].contains("expected attribute: value pairs (a string or null each)"),
        "{e:?}"
    );
}

#[test]
fn service_settings_decode() {
    let with = |extra: &str| format!("{VALID}  {extra}\n");
    let config = load(&with("oom_score_adj: 500")).expect("valid");
    assert_eq!(config.service.oom_score_adj, Some(500));
    let config = load(&with("oom_score_adj:")).expect("valid");
    assert_eq!(config.service.oom_score_adj, None);
    let config = load(&with("shutdown_timeout: 30s")).expect("valid");
    assert_eq!(config.service.shutdown_timeout, GoDuration::from_secs(30));
    let config = load(&with(
        "telemetry: {logs: {level: debug}, metrics: {address: ''}}",
    ))
    .expect("valid");
    assert_eq!(
        config.service.telemetry.logs.level,
        crate::config::LogLevel::Debug
    );
    assert_eq!(
        config.service.telemetry.logs.encoding,
        crate::config::LogEncoding::Console
    );
    assert_eq!(
        config.service.telemetry.metrics.address.as_deref(),
        Some("")
    );
    assert!(config
        .service
        .telemetry
        .metrics
        .effective_readers()
        .is_empty());

    assert_eq!(
        errors(&with("oom_score_adj: 2000")),
        ["c.yaml:24:18: 'service::oom_score_adj' must be between -1000 and 1000, got 2000"]
    );
    assert_eq!(
            errors(&with("telemetry: {logs: {levle: debug}}")),
            ["c.yaml:24:22: 'service::telemetry::logs' has invalid keys: levle; did you mean \"level\"?"]
        );
    // Telemetry values are checked where they are written.
    let config = load(&with(
        "telemetry: {logs: {level: fatal, encoding: json}, metrics: {level: none}}",
    ))
    .expect("valid");
    let telemetry = &config.service.telemetry;
    assert_eq!(telemetry.logs.level, crate::config::LogLevel::Error);
    assert_eq!(telemetry.logs.encoding, crate::config::LogEncoding::Json);
    assert_eq!(telemetry.metrics.level, crate::config::MetricsLevel::None);
    for (bad, key) in [
        ("logs: {level: verbose}", "logs::level"),
        ("logs: {encoding: text}", "logs::encoding"),
        ("metrics: {level: full}", "metrics::level"),
    ] {
        let e = errors(&with(&format!("telemetry: {{{bad}}}")));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("c.yaml:24:")
                && e[0].contains(&format!("'service::telemetry::{key}'")),
            "{e:?}"
        );
    }
    assert_eq!(
            errors(&with("shutdown_timeout: [1]")),
            ["c.yaml:24:21: 'service::shutdown_timeout' expected a duration such as 5s, 200ms or 1m30s, got a sequence"]
        );
}

#[test]
fn reports_every_graph_error_at_the_entry_that_names_it() {
    let text = "\
receivers:
  otlp: {protocols: {grpc: }}
processors:
  batch:
exporters:
  debug:
  otlp:
    endpoint: localhost:4317
    sending_queue:
      storage: file_storage/missing
extensions:
  health_check:
service:
  extensions: [health_check, pprof]
  pipelines:
    logs:
      receivers: [otlp, nope]
      processors: [batch, batch, ghost]
      exporters: [debug, gone]
    metrics:
      receivers: []
    traces:
      receivers: [otlp]
      exporters: [debug]
";
    assert_eq!(
            errors(text),
            [
                "c.yaml:22:5: 'service::pipelines' pipeline \"traces\": the traces signal is not supported by oomscope (logs, metrics)",
                "c.yaml:18:27: 'service::pipelines::logs' references processor \"batch\" multiple times",
                "c.yaml:20:5: 'service::pipelines::metrics' must have at least one receiver",
                "c.yaml:20:5: 'service::pipelines::metrics' must have at least one exporter",
                "c.yaml:14:30: 'service::extensions' references extension \"pprof\" which is not configured",
                "c.yaml:17:25: 'service::pipelines::logs' references receiver \"nope\" which is not configured",
                "c.yaml:18:34: 'service::pipelines::logs' references processor \"ghost\" which is not configured",
                "c.yaml:19:26: 'service::pipelines::logs' references exporter \"gone\" which is not configured",
                "c.yaml:10:16: 'exporters::otlp::sending_queue::storage' storage \"file_storage/missing\" is not configured in extensions: a persistent sending queue needs a file_storage extension",
            ]
        );
}

#[test]
fn storage_must_be_an_enabled_file_storage() {
    let text = "\
receivers: {otlp: {protocols: {grpc: }}}
exporters:
  otlp:
    endpoint: localhost:4317
    sending_queue: {storage: health_check}
  otlp/2:
    endpoint: localhost:4317
    sending_queue: {storage: file_storage}
extensions: {health_check: , file_storage: }
service:
  extensions: [health_check]
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp, otlp/2]}
";
    assert_eq!(
            errors(text),
            [
                "c.yaml:5:30: 'exporters::otlp::sending_queue::storage' storage \"health_check\" is not a file_storage extension: a persistent sending queue needs a file_storage extension",
                "c.yaml:8:30: 'exporters::otlp/2::sending_queue::storage' storage \"file_storage\" is not enabled in service::extensions: a persistent sending queue needs a file_storage extension",
            ]
        );
}

#[test]
fn empty_sections_are_reported() {
    assert_eq!(
        errors("receivers:\nservice:\n  pipelines:\n"),
        [
            "c.yaml:1:1: no receiver configuration specified in config",
            "no exporter configuration specified in config",
            "c.yaml:2:1: service must have at least one pipeline",
        ]
    );
    assert_eq!(
        errors("# nothing\n"),
        ["c.yaml:1:1: empty configuration file"]
    );
    assert_eq!(
        errors("- a\n"),
        ["c.yaml:1:1: expected a map at the top level, got a sequence"]
    );
}

#[test]
fn unknown_keys_types_and_ids() {
    let text = "\
receivers:
  otlp:
    protocol: {grpc: }
  foo/1:
  9bad:
processors:
  batch:
exporters:
  logging:
  debug:
connectors:
  forward:
extras: 1
service:
  extension: []
  pipelines:
    logs:
      receivers: [otlp]
      exporter: [debug]
";
    assert_eq!(
            errors(text),
            [
                "c.yaml:13:1: has invalid keys: extras",
                "c.yaml:3:5: 'receivers::otlp' has invalid keys: protocol; did you mean \"protocols\"?",
                "c.yaml:4:3: 'receivers' unknown type: \"foo\" for id: \"foo/1\" (valid values: [file_log filelog journald kmsg memory oom otlp])",
                "c.yaml:5:3: 'receivers' invalid character(s) in type \"9bad\"",
                "c.yaml:9:3: 'exporters::logging' the logging exporter has been deprecated, use the debug exporter instead",
                "c.yaml:12:3: 'connectors' connectors are not supported by oomscope",
                "c.yaml:15:3: 'service' has invalid keys: extension; did you mean \"extensions\"?",
                "c.yaml:19:7: 'service::pipelines::logs' has invalid keys: exporter; did you mean \"exporters\"?",
                "c.yaml:17:5: 'service::pipelines::logs' must have at least one exporter",
            ]
        );
    assert_eq!(
            errors("receivers: {otlp: {protocols: {grpc: }}}\nexporters: {nope: }\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [nope]}}}\n"),
            [
                "c.yaml:2:13: 'exporters' unknown type: \"nope\" for id: \"nope\" (valid values: [debug file otlp otlp_grpc otlp_http otlphttp])",
            ]
        );
}

#[test]
fn component_validation_errors_carry_the_component_position_and_path() {
    let text = "\
receivers:
  otlp:
  otlp/http:
    protocols:
      http: {endpoint: localhost}
exporters:
  debug:
  otlp:
    compression: zstd
  otlphttp: {}
service:
  pipelines:
    logs: {receivers: [otlp, otlp/http], exporters: [debug, otlp, otlphttp]}
";
    // Each invalid component is reported once, at its id; the pipeline
    // naming it does not report it again as "not configured".
    assert_eq!(
            errors(text),
            [
                "c.yaml:2:3: 'receivers::otlp' must specify at least one protocol when using the OTLP receiver",
                // Pointed at the offending key, not at the component.
                "c.yaml:5:14: 'receivers::otlp/http::protocols::http::endpoint' \"localhost\" must be host:port (for example 127.0.0.1:4317, or :4317 for every interface)",
                "c.yaml:8:3: 'exporters::otlp::endpoint' requires a non-empty \"endpoint\"",
                "c.yaml:10:3: 'exporters::otlphttp::endpoint' requires a non-empty \"endpoint\" (or both \"logs_endpoint\" and \"metrics_endpoint\"); logs_endpoint is not set",
            ]
        );
}

#[test]
fn old_collector_exporter_spellings_load() {
    let text = "\
receivers: {otlp: {protocols: {http: }}}
exporters:
  otlp_grpc:
    endpoint: localhost:4317
  otlp_http/backup:
    endpoint: http://localhost:4318
  otlp/classic:
    endpoint: localhost:4319
  otlphttp/classic:
    endpoint: http://localhost:4320
service:
  pipelines:
    metrics: {receivers: [otlp], exporters: [otlp_grpc, otlp_http/backup]}
    logs: {receivers: [otlp], exporters: [otlp/classic, otlphttp/classic]}
";
    let config = load(text).expect("valid");
    // The collector's long-standing names `otlp` and `otlphttp`.
    assert_eq!(
        exporter::<OtlpGrpcExporterConfig>(&config, &id("otlp/classic"))
            .map(|c| c.endpoint.as_str()),
        Some("localhost:4319"),
        "{:?}",
        config.exporters
    );
    assert_eq!(
        exporter::<OtlpHttpExporterConfig>(&config, &id("otlphttp/classic"))
            .map(|c| c.endpoint.as_str()),
        Some("http://localhost:4320"),
        "{:?}",
        config.exporters
    );
    assert_eq!(
        exporter::<OtlpGrpcExporterConfig>(&config, &id("otlp_grpc")).map(|c| c.endpoint.as_str()),
        Some("localhost:4317"),
        "{:?}",
        config.exporters
    );
    assert_eq!(
        exporter::<OtlpHttpExporterConfig>(&config, &id("otlp_http/backup"))
            .map(|c| c.endpoint.as_str()),
        Some("http://localhost:4318"),
        "{:?}",
        config.exporters
    );
    assert_eq!(
        config
            .service
            .pipelines
            .iter()
            .find(|(pid, _)| pid.signal == Signal::Metrics)
            .map(|(_, p)| p.exporters.clone()),
        Some(vec![id("otlp_grpc"), id("otlp_http/backup")])
    );
}

#[test]
fn environment_values_are_typed_like_the_collector() {
    let vars: HashMap<&str, &str> = [("QS", "5")].into();
    let env = |name: &str| vars.get(name).map(|v| v.to_string());
    let text = "\
receivers: {otlp: {protocols: {grpc: }}}
exporters:
  otlp:
    endpoint: localhost:4317
    sending_queue:
      queue_size: ${env:QS}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp]}
";
    let config = load_str_with_env(super::registry(), "c.yaml", text, &env).expect("valid");
    let Some(otlp) = exporter::<OtlpGrpcExporterConfig>(&config, &id("otlp")) else {
        panic!("otlp exporter missing");
    };
    assert_eq!(otlp.sending_queue.queue_size, 5);

    let quoted = text.replace("${env:QS}", "\"${env:QS}\"");
    let errs: Vec<String> = load_str_with_env(super::registry(), "c.yaml", &quoted, &env)
        .expect_err("string where a number is wanted")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(errs.contains(&"c.yaml:6:19: 'exporters::otlp::sending_queue::queue_size' expected an integer, got \"5\"".to_string()), "{errs:?}");
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn files_merge_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = write(
            &dir,
            "base.yaml",
            "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nservice:\n  oom_score_adj: 100\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n",
        );
    let over = write(
            &dir,
            "over.yaml",
            "exporters:\n  otlp:\n    endpoint: localhost:4317\n    sending_queue: {queue_size: 7}\nservice:\n  oom_score_adj: 200\n  pipelines:\n    logs:\n      exporters: [otlp]\n",
        );
    let config = load_files_with_env(super::registry(), &[base, over], &|_| None).expect("valid");
    assert_eq!(
        config.exporters.keys().cloned().collect::<Vec<_>>(),
        [id("debug"), id("otlp")]
    );
    let logs = config
        .service
        .pipelines
        .values()
        .next()
        .expect("one pipeline");
    assert_eq!(logs.receivers, [id("otlp")]);
    assert_eq!(logs.exporters, [id("otlp")]);
    assert_eq!(config.service.oom_score_adj, Some(200));
}

#[test]
fn merged_errors_point_into_the_file_that_wrote_the_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = write(
            &dir,
            "base.yaml",
            "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n",
        );
    let over = write(
        &dir,
        "over.yaml",
        "service:\n  pipelines:\n    logs:\n      exporters: [gone]\n",
    );
    let errs = load_files_with_env(super::registry(), &[base, over.clone()], &|_| None)
        .expect_err("invalid");
    assert_eq!(
            errs.to_string(),
            format!(
                "{}:4:19: 'service::pipelines::logs' references exporter \"gone\" which is not configured",
                over.display()
            )
        );
}

#[test]
fn missing_and_empty_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.yaml");
    let empty = write(&dir, "empty.yaml", "");
    let errs = load_files_with_env(
        super::registry(),
        &[missing.clone(), empty.clone()],
        &|_| None,
    )
    .expect_err("invalid");
    let texts: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with(&format!(
            "cannot read configuration file {}: ",
            missing.display()
        )),
        "{}",
        texts[0]
    );
    assert_eq!(
        texts[1],
        format!("{}:1:1: empty configuration file", empty.display())
    );
    assert!(load_files(super::registry(), &[]).is_err());
}

#[test]
fn env_errors_carry_positions() {
    assert_eq!(
            errors("receivers:\n  otlp:\nexporters:\n  debug:\n    verbosity: ${env:no-good}\n"),
            ["c.yaml:5:16: environment variable \"no-good\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"]
        );
}

#[test]
fn four_mistakes_are_four_located_errors_with_suggestions() {
    let text = "\
receivers:
  filelogs:
    include: [/var/log/*.log]
  kmsg:
    storage: file_storage/kmsg
exporters:
  debug:
    verbosty: basic
  otlp/backend:
    endpoint: localhost:4317
service:
  pipelines:
    logs:
      receivers: [kmsg]
      exporters: [otlp/backnd]
";
    assert_eq!(
        errors(text),
        [
            "c.yaml:2:3: 'receivers' unknown type: \"filelogs\" for id: \"filelogs\" (valid values: [file_log filelog journald kmsg memory oom otlp]); did you mean \"filelog\"?",
            "c.yaml:8:5: 'exporters::debug' has invalid keys: verbosty; did you mean \"verbosity\"?",
            "c.yaml:15:19: 'service::pipelines::logs' references exporter \"otlp/backnd\" which is not configured; did you mean \"otlp/backend\"?",
            "c.yaml:5:14: 'receivers::kmsg::storage' storage \"file_storage/kmsg\" is not configured in extensions: the read position is kept in a file_storage extension",
        ]
    );
}

#[test]
fn receivers_naming_storage_are_checked_like_exporters() {
    let text = "\
receivers:
  filelog:
    include: [/x]
    storage: health_check
  kmsg:
    storage: file_storage
extensions: {health_check: , file_storage: }
exporters: {debug: }
service:
  extensions: [health_check]
  pipelines:
    logs: {receivers: [filelog, kmsg], exporters: [debug]}
";
    assert_eq!(
        errors(text),
        [
            "c.yaml:4:14: 'receivers::filelog::storage' storage \"health_check\" is not a file_storage extension: file offsets are kept in a file_storage extension",
            "c.yaml:6:14: 'receivers::kmsg::storage' storage \"file_storage\" is not enabled in service::extensions: the read position is kept in a file_storage extension",
        ]
    );
    let fixed = text.replace("[health_check]", "[health_check, file_storage]");
    let fixed = fixed.replace("storage: health_check", "storage: file_storage");
    assert!(load(&fixed).is_ok());
}

#[test]
fn validation_errors_point_at_the_offending_line() {
    let text = "\
receivers:
  memory:
    collection_interval: 10s
    cgroups:
      max_cgroups: 0
processors:
  resource:
    attributes:
      - key: a
        action: insert
        value: b
      - key: c
        action: delete
        value: d
exporters:
  file:
    path: /tmp/x.json
    rotation:
      max_megabytes: 0
service:
  pipelines:
    metrics: {receivers: [memory], processors: [resource], exporters: [file]}
";
    assert_eq!(
        errors(text),
        [
            "c.yaml:5:7: 'receivers::memory::cgroups::max_cgroups' must be between 1 and 100000",
            "c.yaml:12:9: 'processors::resource::attributes[1]' (key \"c\"): action \"delete\" takes neither \"value\" nor \"from_attribute\"",
            "c.yaml:19:7: 'exporters::file::rotation::max_megabytes' must be greater than zero",
        ]
    );
}

/// The `oom` receiver's `cgroups` and `workload` blocks: the shape the
/// fleet uses loads; bad values point at their key; unknown keys are
/// refused.
#[test]
fn oom_cgroups_and_workload_blocks() {
    let ok = "\
receivers:
  oom:
    cgroups: {include: [\"/oomscope-fleet/node-07/**\"]}
    workload: {node_name: node-07, refresh_interval: 5s}
exporters:
  debug: {}
service:
  pipelines:
    logs: {receivers: [oom], exporters: [debug]}
";
    assert!(load(ok).is_ok(), "{:?}", errors(ok));
    let bad = "\
receivers:
  oom:
    cgroups:
      include: [\"[\"]
    workload:
      cache_size: 0
  memory:
    workload:
      refresh_interval: 10ms
exporters:
  debug: {}
service:
  pipelines:
    logs: {receivers: [oom], exporters: [debug]}
    metrics: {receivers: [memory], exporters: [debug]}
";
    let errs = errors(bad);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("c.yaml:4:7: 'receivers::oom::cgroups::include' invalid glob"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with(
            "c.yaml:9:7: 'receivers::memory::workload::refresh_interval' must be at least 1s"
        ),
        "{errs:#?}"
    );
    let unknown = ok.replace("node_name:", "nodename:");
    assert!(errors(&unknown)
        .iter()
        .any(|e| e.contains("nodename") && e.contains("node_name")));
}
