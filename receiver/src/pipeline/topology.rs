//! Wires configured components into running pipelines, and takes them down in
//! order: receivers stop first, then every processor flushes into the
//! exporters, then the exporters drain their queues.
//!
//! Shutdown needs no messages: each component holds only the consumers it
//! feeds, so when the receivers end and drop their outputs, each channel
//! closes in turn down the graph and every task flushes before it ends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::BuildContext;
use crate::component::ReceiverOutputs;
use crate::config::{ComponentId, Config, PipelineId};
use crate::extensions::Extensions;
use crate::pipeline::{DynConsumer, Fanout, Signal};
use crate::telemetry::Telemetry;
use std::sync::Arc;

/// Counts the items of each batch offered to `inner` (whether taken or
/// not, as the collector's `otelcol_processor_incoming_items` and
/// `_outgoing_items` do).
struct CountingConsumer {
    inner: DynConsumer,
    items: crate::telemetry::ItemCounter,
}

#[async_trait::async_trait]
impl crate::pipeline::Consumer for CountingConsumer {
    async fn consume(
        &self,
        batch: crate::pipeline::Batch,
    ) -> Result<(), crate::pipeline::ConsumeError> {
        self.items.add(batch.item_count());
        self.inner.consume(batch).await
    }
}

/// A running set of pipelines.
pub struct Topology {
    receivers: Vec<(ComponentId, JoinHandle<()>)>,
    processors: Vec<(ComponentId, JoinHandle<()>)>,
    exporters: Vec<(ComponentId, JoinHandle<()>)>,
    /// Cancelled first: receivers stop taking data.
    receivers_shutdown: CancellationToken,
    /// Cancelled once receivers are done: processors and exporters bound their
    /// remaining work (exporters stop retrying forever).
    pipelines_shutdown: CancellationToken,
}

impl Topology {
    /// Builds exporters, then each pipeline's processors (back to front), then
    /// starts the receivers. Fails on the first component that cannot start
    /// (for example a port already in use), after stopping what was started.
    pub async fn start(
        config: &Config,
        telemetry: Arc<Telemetry>,
        extensions: Arc<Extensions>,
    ) -> anyhow::Result<Topology> {
        let receivers_shutdown = CancellationToken::new();
        let pipelines_shutdown = CancellationToken::new();
        let ctx = |id: &ComponentId, token: &CancellationToken| BuildContext {
            id: id.clone(),
            telemetry: Arc::clone(&telemetry),
            extensions: Arc::clone(&extensions),
            shutdown: token.clone(),
        };
        let mut topology = Topology {
            receivers: Vec::new(),
            processors: Vec::new(),
            exporters: Vec::new(),
            receivers_shutdown: receivers_shutdown.clone(),
            pipelines_shutdown: pipelines_shutdown.clone(),
        };

        // One instance per exporter, shared by every pipeline that names it.
        let mut exporters: BTreeMap<&ComponentId, DynConsumer> = BTreeMap::new();
        let used_exporters = config.service.pipelines.values().flat_map(|p| &p.exporters);
        for id in used_exporters {
            if exporters.contains_key(id) {
                continue;
            }
            let Some(cfg) = config.exporters.get(id) else {
                drop(exporters);
                topology.abort().await;
                anyhow::bail!("exporter {id} is not configured");
            };
            // Its queue gauges have one series per signal it serves.
            let signals: Vec<_> = config
                .service
                .pipelines
                .iter()
                .filter(|(_, p)| p.exporters.contains(id))
                .map(|(pid, _)| pid.signal)
                .collect();
            telemetry.set_exporter_signals(id, &signals);
            match cfg.build(&ctx(id, &pipelines_shutdown)).await {
                Ok((consumer, handle)) => {
                    exporters.insert(id, consumer);
                    topology.exporters.push((id.clone(), handle));
                }
                Err(e) => {
                    drop(exporters);
                    topology.abort().await;
                    return Err(e.context(format!("failed to start exporter {id}")));
                }
            }
        }

        // Each pipeline: exporters fan-out <- processors (built back to front).
        let mut heads: BTreeMap<&PipelineId, DynConsumer> = BTreeMap::new();
        for (pid, pipeline) in &config.service.pipelines {
            let built = Fanout::build(
                pipeline
                    .exporters
                    .iter()
                    .filter_map(|id| exporters.get(id).cloned())
                    .collect(),
            );
            let mut next = match built {
                Ok(next) => next,
                Err(e) => {
                    drop((heads, exporters));
                    topology.abort().await;
                    anyhow::bail!("pipeline {pid}: {e} (it names no exporter)");
                }
            };
            for id in pipeline.processors.iter().rev() {
                let Some(cfg) = config.processors.get(id) else {
                    drop((heads, exporters, next));
                    topology.abort().await;
                    anyhow::bail!("processor {id} is not configured");
                };
                // Counted around the processor, as the collector's
                // processorhelper does: what it was handed, what it handed on.
                let (incoming, outgoing) = telemetry.processor_items(id, pid.signal);
                let counted: DynConsumer = Arc::new(CountingConsumer {
                    inner: next,
                    items: outgoing,
                });
                let built = cfg
                    .build(&ctx(id, &pipelines_shutdown), pid.signal, counted)
                    .with_context(|| format!("failed to build processor {id} in pipeline {pid}"));
                match built {
                    Ok((consumer, handle)) => {
                        next = Arc::new(CountingConsumer {
                            inner: consumer,
                            items: incoming,
                        });
                        if let Some(h) = handle {
                            topology.processors.push((id.clone(), h));
                        }
                    }
                    Err(e) => {
                        drop((heads, exporters));
                        topology.abort().await;
                        return Err(e);
                    }
                }
            }
            heads.insert(pid, next);
        }
        // From here on the pipelines hold the only references to exporters.
        drop(exporters);

        // Receivers: each feeds the heads of the pipelines that name it.
        let mut receiver_ids: Vec<&ComponentId> = config
            .service
            .pipelines
            .values()
            .flat_map(|p| &p.receivers)
            .collect();
        receiver_ids.sort();
        receiver_ids.dedup();
        let receiver_types: Vec<String> =
            receiver_ids.iter().map(|id| id.type_name.clone()).collect();
        for id in receiver_ids {
            let outputs_for = |signal: Signal| {
                let feeds: Vec<DynConsumer> = config
                    .service
                    .pipelines
                    .iter()
                    .filter(|(pid, p)| pid.signal == signal && p.receivers.contains(id))
                    .filter_map(|(pid, _)| heads.get(pid).cloned())
                    .collect();
                // No pipeline of this signal names the receiver: no output.
                Fanout::build(feeds).ok()
            };
            let outputs = ReceiverOutputs {
                logs: outputs_for(Signal::Logs),
                metrics: outputs_for(Signal::Metrics),
            };
            let Some(cfg) = config.receivers.get(id) else {
                drop((heads, outputs));
                topology.abort().await;
                anyhow::bail!("receiver {id} is not configured");
            };
            match cfg
                .start_in_agent(ctx(id, &receivers_shutdown), outputs, &receiver_types)
                .await
            {
                Ok(handle) => topology.receivers.push((id.clone(), handle)),
                Err(e) => {
                    drop(heads);
                    topology.abort().await;
                    return Err(e.context(format!("failed to start receiver {id}")));
                }
            }
        }
        drop(heads);
        Ok(topology)
    }

    /// Stops receivers, then lets processors flush and exporters drain, all
    /// within `timeout`; what is still running then is aborted (a persistent
    /// queue keeps its data on disk; an in-memory queue's remainder is lost
    /// and counted as failed through its acknowledgements).
    ///
    /// Receivers get the first share of the budget ([`receiver_grace`]): a
    /// receiver still running then (a client stuck in a request) is aborted,
    /// which releases its pipeline heads, so processors and exporters keep the
    /// rest of the budget to flush what was accepted.
    pub async fn shutdown(self, timeout: Duration) {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let receivers_deadline = start + receiver_grace(timeout);
        self.receivers_shutdown.cancel();
        stop_stage("receiver", self.receivers, receivers_deadline).await;
        // Receivers are done: nothing new arrives, so processors and
        // exporters may now bound their remaining work.
        self.pipelines_shutdown.cancel();
        stop_stage("processor", self.processors, deadline).await;
        stop_stage("exporter", self.exporters, deadline).await;
    }
    /// Stops everything at once (a failed start).
    async fn abort(&mut self) {
        self.receivers_shutdown.cancel();
        self.pipelines_shutdown.cancel();
        for (_, h) in self
            .receivers
            .drain(..)
            .chain(self.processors.drain(..))
            .chain(self.exporters.drain(..))
        {
            h.abort();
            let _ = h.await;
        }
    }
}

/// The receivers' share of a shutdown `timeout`: a third of it, at most
/// [`MAX_RECEIVER_GRACE`]; processors and exporters keep the rest.
pub fn receiver_grace(timeout: Duration) -> Duration {
    (timeout / 3).min(MAX_RECEIVER_GRACE)
}

/// Longest the receivers may take to finish in-flight requests at shutdown.
pub const MAX_RECEIVER_GRACE: Duration = Duration::from_secs(5);

/// Waits for each task of one stage until `deadline`; aborts (and awaits,
/// so its resources are released) any task still running then.
async fn stop_stage(
    kind: &str,
    handles: Vec<(ComponentId, JoinHandle<()>)>,
    deadline: tokio::time::Instant,
) {
    for (id, mut handle) in handles {
        match tokio::time::timeout_at(deadline, &mut handle).await {
            Ok(Ok(())) => tracing::debug!(component = %id, "{kind} stopped"),
            Ok(Err(e)) => {
                tracing::error!(component = %id, error = %e, "{kind} task failed")
            }
            Err(_) => {
                tracing::warn!(component = %id, "{kind} did not stop within its share of the shutdown timeout; aborting it");
                handle.abort();
                // An aborted task drops its future (and what it holds)
                // before the handle resolves.
                let _ = handle.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::pipeline::{Batch, BatchNotifier, DeliveryStatus, Finalizers, Payload};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use std::net::SocketAddr;

    fn logs(n: usize) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// Builds `pipeline`'s processors and exporters from `yaml` the way
    /// `Topology::start` does, and returns the pipeline's head.
    async fn pipeline_head(yaml: &str) -> (DynConsumer, Vec<JoinHandle<()>>) {
        let config = match load_str(crate::components::registry(), "t.yaml", yaml) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        };
        let ctx = |id: &ComponentId| BuildContext {
            id: id.clone(),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions::default()),
            shutdown: CancellationToken::new(),
        };
        let (_, pipeline) = config.service.pipelines.iter().next().expect("a pipeline");
        let mut tasks = Vec::new();
        let mut exporters = Vec::new();
        for id in &pipeline.exporters {
            let (c, h) = config.exporters[id]
                .build(&ctx(id))
                .await
                .expect("exporter builds");
            exporters.push(c);
            tasks.push(h);
        }
        let mut next = Fanout::build(exporters).expect("the pipeline names an exporter");
        for id in pipeline.processors.iter().rev() {
            let (c, h) = config.processors[id]
                .build(&ctx(id), Signal::Logs, next)
                .expect("processor builds");
            next = c;
            tasks.extend(h);
        }
        (next, tasks)
    }

    async fn send_and_wait(head: &DynConsumer, n: usize) -> DeliveryStatus {
        let (finalizer, status) = BatchNotifier::new_pair();
        head.consume(Batch::new(logs(n)).with_finalizers(Finalizers::new(finalizer)))
            .await
            .expect("consumed");
        tokio::time::timeout(std::time::Duration::from_secs(30), status)
            .await
            .expect("acknowledged in time")
            .expect("notifier resolved")
    }

    /// A receiver's acknowledgement travels through batching (merged with
    /// other data, split by max size) and the exporter helper, and resolves
    /// `Delivered` only once the file exporter has written the data.
    #[tokio::test]
    async fn delivered_after_batching_splitting_and_export() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let yaml = format!(
            "receivers: {{otlp: {{protocols: {{grpc: }}}}}}\n\
             processors: {{batch: {{timeout: 50ms, send_batch_size: 3, send_batch_max_size: 3}}}}\n\
             exporters: {{file: {{path: \"{}\"}}}}\n\
             service: {{pipelines: {{logs: {{receivers: [otlp], processors: [batch], exporters: [file]}}}}}}\n",
            out.display()
        );
        let (head, tasks) = pipeline_head(&yaml).await;
        assert_eq!(send_and_wait(&head, 7).await, DeliveryStatus::Delivered);
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(
            written.lines().count(),
            3,
            "7 records split 3+3+1:\n{written}"
        );
        drop(head);
        for t in tasks {
            t.await.expect("task ends after its input closes");
        }
    }

    /// With a fan-out, one exporter failing is enough: the batch is not
    /// acknowledged as delivered even though the other exporter wrote it.
    #[tokio::test]
    async fn one_failing_branch_fails_the_acknowledgement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        // Refuses connections for the whole test (a dropped listener's port
        // could be taken by anything meanwhile).
        let (_refusing, dead) = crate::test_support::refused_addr();
        let yaml = format!(
            "receivers: {{otlp: {{protocols: {{grpc: }}}}}}\n\
             exporters:\n  file: {{path: \"{}\"}}\n  otlp:\n    endpoint: \"{dead}\"\n    tls: {{insecure: true}}\n    retry_on_failure: {{enabled: false}}\n\
             service: {{pipelines: {{logs: {{receivers: [otlp], exporters: [file, otlp]}}}}}}\n",
            out.display()
        );
        let (head, _tasks) = pipeline_head(&yaml).await;
        assert_eq!(send_and_wait(&head, 2).await, DeliveryStatus::Failed);
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(written.lines().count(), 1, "the file branch still wrote it");
    }

    /// A client stuck in a request must not cost data accepted before
    /// shutdown: the receiver gets only its share of the budget, then lets go
    /// of the pipeline, and the batch processor still flushes into the file.
    /// Each exporter's queue gauges have one `data_type` series per signal
    /// of the pipelines it is in.
    #[tokio::test]
    async fn queue_gauges_follow_the_signals_of_each_exporter() {
        let yaml = "receivers: {otlp: {protocols: {http: {endpoint: \"127.0.0.1:0\"}}}}\n\
             exporters: {debug/logs: {}, debug/both: {}}\n\
             service: {pipelines: {logs: {receivers: [otlp], exporters: [debug/logs, debug/both]}, \
             metrics: {receivers: [otlp], exporters: [debug/both]}}}\n";
        let config = match load_str(crate::components::registry(), "t.yaml", yaml) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        };
        let registry = prometheus::Registry::new();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(crate::telemetry::prometheus_reader(registry.clone()).expect("reader"))
            .build();
        let telemetry = Telemetry::new(provider, crate::config::MetricsLevel::Basic);
        // Kept: the meter provider stops collecting once dropped.
        let topology = Topology::start(
            &config,
            Arc::clone(&telemetry),
            Arc::new(Extensions::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("starts: {e:#}"));
        let families = registry.gather();
        let mut series: Vec<(String, String)> = families
            .iter()
            .filter(|f| f.name() == "otelcol_exporter_queue_capacity")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                let label = |k: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == k)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                (label("exporter"), label("data_type"))
            })
            .collect();
        series.sort();
        let s = |e: &str, d: &str| (e.to_string(), d.to_string());
        assert_eq!(
            series,
            [
                s("debug/both", "logs"),
                s("debug/both", "metrics"),
                s("debug/logs", "logs")
            ]
        );
        topology.shutdown(Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn accepted_data_is_flushed_despite_a_client_stuck_in_a_request() {
        use prost::Message as _;
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        // A port that was free a moment ago may be taken by the time the
        // receiver binds it (by anything on the machine): try another then.
        let mut attempts = 0;
        let (topology, port) = loop {
            let port = {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                probe.local_addr().expect("addr").port()
            };
            // The batch processor holds the data until its input closes.
            let yaml = format!(
                "receivers: {{otlp: {{protocols: {{http: {{endpoint: \"127.0.0.1:{port}\"}}}}}}}}\n\
                 processors: {{batch: {{timeout: 1h, send_batch_size: 1000}}}}\n\
                 exporters: {{file: {{path: \"{}\"}}}}\n\
                 service: {{pipelines: {{logs: {{receivers: [otlp], processors: [batch], exporters: [file]}}}}}}\n",
                out.display()
            );
            let config = match load_str(crate::components::registry(), "t.yaml", &yaml) {
                Ok(c) => c,
                Err(e) => panic!("config: {e}"),
            };
            match Topology::start(&config, Telemetry::noop(), Arc::new(Extensions::default())).await
            {
                Ok(t) => break (t, port),
                Err(e) if attempts < 20 && in_use(&e) => attempts += 1,
                Err(e) => panic!("starts: {e:#}"),
            }
        };
        let request = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs: match logs(2) {
                Payload::Logs(rl) => rl,
                Payload::Metrics(_) => Vec::new(),
            },
        };
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .expect("posted");
        assert_eq!(response.status(), 200);
        // A client that announces a body and never sends it.
        let mut stuck = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stuck
            .write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n")
            .await
            .expect("write");
        // Wait until the server has read the request head (nothing left
        // unread on its end of the connection), so the request is in
        // flight: hyper reads, parses and dispatches a head in one poll of
        // its connection task, and this runtime has one thread.
        let server_end = SocketAddr::from(([127, 0, 0, 1], port));
        let client_end = stuck.local_addr().expect("addr");
        crate::test_support::wait_until_async("the server read the request head", || {
            crate::test_support::unread_bytes(server_end, client_end) == Some(0)
        })
        .await;
        tokio::time::timeout(
            Duration::from_secs(30),
            topology.shutdown(Duration::from_secs(3)),
        )
        .await
        .expect("shutdown ends");
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(
            written.lines().count(),
            1,
            "the accepted request was flushed:\n{written}"
        );
        drop(stuck);
    }

    /// Whether starting failed because an address was in use.
    fn in_use(e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
        }) || format!("{e:#}").contains("in use")
    }

    #[test]
    fn receivers_get_a_third_of_the_budget_at_most_5s() {
        assert_eq!(
            receiver_grace(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(receiver_grace(Duration::from_secs(60)), MAX_RECEIVER_GRACE);
    }
}
