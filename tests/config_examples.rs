//! `oomscope validate` on the shipped configurations (every `examples/*.yaml`
//! and `config/default.yaml`), on broken configurations (each must fail with
//! `file:line:column: 'path' message`, worded exactly as below), and on
//! several `--config` files merged in order.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Header line `oomscope validate` prints before the list of errors.
const INVALID_HEADER: &str = "oomscope: invalid configuration:";

/// Dummy values for every variable an example requires.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    (
        "OTLP_GATEWAY_ENDPOINT",
        "otel-gateway.example.internal:4317",
    ),
    (
        "GRAFANA_CLOUD_OTLP_ENDPOINT",
        "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
    ),
    ("GRAFANA_CLOUD_BASIC_AUTH", "MTIzNDU2OmdsY19kdW1teQ=="),
    ("HONEYCOMB_API_KEY", "dummy-honeycomb-key"),
    (
        "ELASTIC_OTLP_ENDPOINT",
        "https://my-deployment.apm.us-central1.gcp.cloud.es.io:443",
    ),
    ("ELASTIC_API_KEY", "ZHVtbXk6a2V5"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("receiver/ has a parent")
        .to_path_buf()
}

/// Runs `oomscope [--config P]... validate` with exactly the variables in
/// `env` (the test's own environment is not passed on, so a variable set on
/// the machine cannot make a config pass).
fn validate(configs: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oomscope"));
    cmd.env_clear().envs(env.iter().copied());
    for config in configs {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("validate").current_dir(repo_root());
    cmd.output().expect("run the oomscope binary")
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_valid(configs: &[&Path], env: &[(&str, &str)]) {
    let output = validate(configs, env);
    assert!(
        output.status.success(),
        "{configs:?} should be valid\n{}",
        describe(&output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "configuration is valid\n",
        "{configs:?}"
    );
}

/// Asserts that validation fails (exit 1) and reports exactly `expected`,
/// one error per line, in order.
fn assert_invalid(configs: &[&Path], env: &[(&str, &str)], expected: &[String]) {
    let output = validate(configs, env);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{configs:?} should be invalid\n{}",
        describe(&output)
    );
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Log lines written while loading (an empty variable, ...) may come first.
    let mut lines = stderr.lines().skip_while(|l| *l != INVALID_HEADER);
    assert_eq!(lines.next(), Some(INVALID_HEADER), "{}", describe(&output));
    let errors: Vec<&str> = lines.collect();
    assert_eq!(errors, expected, "{}", describe(&output));
}

fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension() == Some(OsStr::new("yaml")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = example_files();
    let names: Vec<&str> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect();
    for expected in [
        "datadog-otlp-intake.yaml",
        "elastic.yaml",
        "grafana-cloud-otlp.yaml",
        "honeycomb.yaml",
        "local-file-debug.yaml",
        "otlp-collector-gateway.yaml",
    ] {
        assert!(
            names.contains(&expected),
            "examples/{expected} is missing: {names:?}"
        );
    }
    let readme = std::fs::read_to_string(repo_root().join("examples/README.md"))
        .expect("examples/README.md");
    for (path, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(path).expect("read example");
        assert!(
            text.starts_with("# "),
            "{name} must start with a comment saying what it does and which variables it needs"
        );
        assert!(
            readme.contains(name),
            "examples/README.md does not list {name}"
        );
        // Relative path: errors would name it as a user would type it.
        assert_valid(&[Path::new("examples").join(name).as_path()], EXAMPLE_ENV);
    }
}

#[test]
fn examples_with_required_variables_fail_without_them() {
    let cases = [
        (
            "otlp-collector-gateway.yaml",
            "32:5: 'exporters::otlp/gateway::endpoint' requires a non-empty \"endpoint\"",
        ),
        (
            "grafana-cloud-otlp.yaml",
            "30:5: 'exporters::otlphttp/grafana_cloud::endpoint' requires a non-empty \"endpoint\" \
             (or both \"logs_endpoint\" and \"metrics_endpoint\"); logs_endpoint is not set",
        ),
        (
            "elastic.yaml",
            "28:5: 'exporters::otlp/elastic::endpoint' requires a non-empty \"endpoint\"",
        ),
    ];
    for (name, error) in cases {
        let path = Path::new("examples").join(name);
        assert_invalid(
            &[path.as_path()],
            &[],
            &[format!("{}:{error}", path.display())],
        );
    }
}

#[test]
fn default_config_validates() {
    let default = Path::new("config/default.yaml");
    assert_valid(&[default], &[("OOMSCOPE_DATA_DIR", "/tmp/oomscope-test")]);
    // Its variables all have defaults.
    assert_valid(&[default], &[]);
}

#[test]
fn container_and_kubernetes_configs_validate() {
    // The image's built-in config; its one variable has a default.
    let container = Path::new("config/container.yaml");
    assert_valid(&[container], &[]);
    assert_valid(
        &[container],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://otel-gateway.example:4317",
        )],
    );
    // The DaemonSet's ConfigMap, with the variables the DaemonSet sets, alone
    // and with the files the kernel-log component and the example overlay merge over it.
    let kubernetes = Path::new("deploy/kubernetes/base/config.yaml");
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://otel-gateway.observability.svc:4317",
        ),
        ("K8S_NODE_NAME", "node-1"),
    ];
    assert_valid(&[kubernetes], &env);
    for extra in [
        "deploy/kubernetes/components/kernel-log/kernel-log.yaml",
        "deploy/kubernetes/overlays/example/headers.yaml",
    ] {
        assert_valid(&[kubernetes, Path::new(extra)], &env);
    }
    // Without the endpoint the DaemonSet sets, it says so, at that key.
    let text = std::fs::read_to_string(repo_root().join(kubernetes)).expect("read the config");
    let line = 1 + text
        .lines()
        .position(|l| l.contains("endpoint: ${env:OTEL_EXPORTER_OTLP_ENDPOINT}"))
        .expect("the gateway endpoint");
    assert_invalid(
        &[kubernetes],
        &[("K8S_NODE_NAME", "node-1")],
        &[format!(
            "{}:{line}:5: 'exporters::otlp/gateway::endpoint' requires a non-empty \"endpoint\"",
            kubernetes.display()
        )],
    );
}

/// A complete, valid configuration the broken cases below start from.
const VALID: &str = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  batch:
    timeout: 1s
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
";

#[test]
fn broken_configs_name_file_position_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (file name, configuration, expected errors without the "path:" prefix)
    let cases: &[(&str, String, &[&str])] = &[
        (
            "typo.yaml",
            VALID.replace("    timeout: 1s", "    timout: 1s"),
            &["8:5: 'processors::batch' has invalid keys: timout; did you mean \"timeout\"?"],
        ),
        (
            "unknown-type.yaml",
            // Both where it is configured and where a pipeline names it.
            VALID.replace("debug", "debugg"),
            &[
                "10:3: 'exporters' unknown type: \"debugg\" for id: \"debugg\" \
                 (valid values: [debug file otlp otlp_grpc otlp_http otlphttp]); did you mean \"debug\"?",
            ],
        ),
        (
            "unconfigured.yaml",
            VALID.replace("exporters: [debug]", "exporters: [debug, file/out]"),
            &["16:26: 'service::pipelines::logs' references exporter \"file/out\" which is not configured"],
        ),
        (
            "no-receivers.yaml",
            VALID.replace("      receivers: [otlp]\n", ""),
            &["13:5: 'service::pipelines::logs' must have at least one receiver"],
        ),
        (
            "no-exporters.yaml",
            VALID.replace("      exporters: [debug]\n", "      exporters: []\n"),
            &["13:5: 'service::pipelines::logs' must have at least one exporter"],
        ),
        (
            "bad-env-name.yaml",
            VALID.replace("127.0.0.1:4317", "${env:1PORT}"),
            &["5:19: environment variable \"1PORT\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"],
        ),
        (
            "bad-indent.yaml",
            VALID.replace("exporters:\n  debug:", " exporters:\n  debug:"),
            &["9:2: yaml: while parsing a block mapping, did not find expected key"],
        ),
        (
            "tab.yaml",
            VALID.replace("  batch:", "\tbatch:"),
            &["7:2: yaml: tabs disallowed within this context (block indentation)"],
        ),
        (
            "receiver-storage.yaml",
            VALID.replace(
                "receivers:\n",
                "receivers:\n  kmsg:\n    storage: file_storage/kmsg\n",
            ),
            &["3:14: 'receivers::kmsg::storage' storage \"file_storage/kmsg\" is not configured in extensions: the read position is kept in a file_storage extension"],
        ),
        (
            // Four mistakes, four errors in one run, each at its line.
            "four-mistakes.yaml",
            VALID
                .replace("    timeout: 1s", "    timout: 1s")
                .replace("exporters:\n  debug:", "exporters:\n  debug:\n  otlp_htp:")
                .replace("exporters: [debug]", "exporters: [debugg]")
                .replace("receivers:\n", "receivers:\n  kmsg:\n    storage: file_storage\n"),
            &[
                "10:5: 'processors::batch' has invalid keys: timout; did you mean \"timeout\"?",
                "13:3: 'exporters' unknown type: \"otlp_htp\" for id: \"otlp_htp\" \
                 (valid values: [debug file otlp otlp_grpc otlp_http otlphttp]); did you mean \"otlp_http\"?",
                "19:19: 'service::pipelines::logs' references exporter \"debugg\" which is not configured; did you mean \"debug\"?",
                "3:14: 'receivers::kmsg::storage' storage \"file_storage\" is not configured in extensions: the read position is kept in a file_storage extension",
            ],
        ),
    ];
    for (name, text, errors) in cases {
        assert_ne!(text, VALID, "{name}: the replacement did not apply");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        let expected: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect();
        assert_invalid(&[path.as_path()], &[], &expected);
    }
    // The starting point itself is valid, so each failure above is its edit's.
    let valid = dir.path().join("valid.yaml");
    std::fs::write(&valid, VALID).expect("write config");
    assert_valid(&[valid.as_path()], &[]);
}

#[test]
fn several_config_files_merge_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Complete but for its exporter, and with a batch bound below the batch size.
    let base = dir.path().join("base.yaml");
    std::fs::write(
        &base,
        "\
receivers:
  otlp:
    protocols:
      http:
processors:
  batch:
    send_batch_size: 100
    send_batch_max_size: 50
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
",
    )
    .expect("write base");
    // Adds the exporter and overrides one key of the base.
    let overlay = dir.path().join("overlay.yaml");
    std::fs::write(
        &overlay,
        "\
processors:
  batch:
    send_batch_max_size: 10000
exporters:
  debug:
    verbosity: normal
",
    )
    .expect("write overlay");

    let b = base.display();
    assert_invalid(
        &[base.as_path()],
        &[],
        &[
            format!("{b}:8:5: 'processors::batch::send_batch_max_size' must be greater or equal to send_batch_size"),
            "no exporter configuration specified in config".to_string(),
            format!("{b}:14:19: 'service::pipelines::metrics' references exporter \"debug\" which is not configured"),
        ],
    );
    assert_invalid(
        &[overlay.as_path()],
        &[],
        &[
            "no receiver configuration specified in config".to_string(),
            "service must have at least one pipeline".to_string(),
        ],
    );
    assert_valid(&[base.as_path(), overlay.as_path()], &[]);
    // Later files win: in the other order the base's bound overrides the
    // overlay's (and the error points into the base, whose key won).
    assert_invalid(
        &[overlay.as_path(), base.as_path()],
        &[],
        &[format!(
            "{b}:8:5: 'processors::batch::send_batch_max_size' must be greater or equal to send_batch_size"
        )],
    );
}

/// Messages logged while the configuration loads (before the configured
/// logging exists) still reach stderr.
#[test]
fn warnings_while_loading_are_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("empty_var.yaml");
    std::fs::write(
        &config,
        "\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318${env:OOMSCOPE_TEST_EMPTY}
exporters:
  debug:
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [debug]}
",
    )
    .expect("write config");
    let output = validate(&[config.as_path()], &[("OOMSCOPE_TEST_EMPTY", "")]);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Configuration references empty environment variable")
            && stderr.contains("OOMSCOPE_TEST_EMPTY"),
        "{}",
        describe(&output)
    );
}

/// Runs the binary with `args` and no environment but `env`.
fn oomscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run the oomscope binary")
}

#[test]
fn components_lists_every_kind_and_type() {
    let output = oomscope(&["components"], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for (section, names) in [
        (
            "receivers",
            &["filelog", "journald", "kmsg", "memory", "oom", "otlp"][..],
        ),
        ("processors", &["batch", "memory_limiter", "resource"][..]),
        (
            "exporters",
            &["debug", "file", "otlp_grpc", "otlp_http"][..],
        ),
        (
            "extensions",
            &[
                "basicauth",
                "bearertokenauth",
                "file_storage",
                "headers_setter",
                "health_check",
                "status",
            ][..],
        ),
    ] {
        assert!(text.contains(&format!("\n{section}:\n")), "{text}");
        for name in names {
            assert!(
                text.contains(&format!("  - name: {name}\n")),
                "{name}: {text}"
            );
        }
    }
}

#[test]
fn config_uris_and_set_build_a_config_that_print_config_shows_masked() {
    let args = [
        "--config",
        "env:BASE",
        "--config",
        "yaml:exporters::otlp::endpoint: collector:4317",
        "--set",
        "exporters::otlp::headers::x-api-key=${env:KEY}",
        "--set",
        "service::pipelines::logs::exporters=[otlp]",
        "print-config",
    ];
    let env = [
        (
            "BASE",
            "receivers: {otlp: {protocols: {grpc: {endpoint: '127.0.0.1:0'}}}}\n\
             service: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n",
        ),
        ("KEY", "not-for-your-eyes"),
    ];
    let output = oomscope(&args, &env);
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("    endpoint: collector:4317\n"), "{text}");
    assert!(text.contains("      x-api-key: [REDACTED]\n"), "{text}");
    assert!(
        text.contains("      exporters:\n        - otlp\n"),
        "{text}"
    );
    assert!(!text.contains("not-for-your-eyes"), "{text}");

    let mut unredacted = args.to_vec();
    unredacted.extend(["--mode", "unredacted"]);
    let output = oomscope(&unredacted, &env);
    assert!(String::from_utf8_lossy(&output.stdout).contains("x-api-key: not-for-your-eyes"));

    // What print-config prints loads again, to the same configuration.
    let dir = tempfile::tempdir().expect("tempdir");
    let printed = dir.path().join("printed.yaml");
    std::fs::write(&printed, &output.stdout).expect("write");
    assert_valid(&[printed.as_path()], &[]);

    // An invalid result is refused with its errors, as by validate.
    let mut broken = args[..args.len() - 1].to_vec();
    broken.extend([
        "--set",
        "service::pipelines::logs::exporters=[otlpp]",
        "print-config",
    ]);
    let output = oomscope(&broken, &env);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("did you mean \"otlp\"?"),
        "{}",
        describe(&output)
    );
}
