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
use crate::config::{ComponentId, Config, PipelineId};
use crate::extensions::Extensions;
use crate::pipeline::{DynConsumer, Fanout, Signal};
use crate::receivers::ReceiverOutputs;
use crate::telemetry::Telemetry;
use std::sync::Arc;

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
                anyhow::bail!("exporter {id} is not configured");
            };
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
            let mut next = Fanout::build(
                pipeline
                    .exporters
                    .iter()
                    .filter_map(|id| exporters.get(id).cloned())
                    .collect(),
            );
            for id in pipeline.processors.iter().rev() {
                let Some(cfg) = config.processors.get(id) else {
                    anyhow::bail!("processor {id} is not configured");
                };
                let built = cfg
                    .build(&ctx(id, &pipelines_shutdown), pid.signal, next)
                    .with_context(|| format!("failed to build processor {id} in pipeline {pid}"));
                match built {
                    Ok((consumer, handle)) => {
                        next = consumer;
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
        for id in receiver_ids {
            let outputs_for = |signal: Signal| {
                let feeds: Vec<DynConsumer> = config
                    .service
                    .pipelines
                    .iter()
                    .filter(|(pid, p)| pid.signal == signal && p.receivers.contains(id))
                    .filter_map(|(pid, _)| heads.get(pid).cloned())
                    .collect();
                (!feeds.is_empty()).then(|| Fanout::build(feeds))
            };
            let outputs = ReceiverOutputs {
                logs: outputs_for(Signal::Logs),
                metrics: outputs_for(Signal::Metrics),
            };
            let Some(cfg) = config.receivers.get(id) else {
                anyhow::bail!("receiver {id} is not configured");
            };
            match cfg.start(ctx(id, &receivers_shutdown), outputs).await {
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
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        self.receivers_shutdown.cancel();
        let stages = [
            ("receiver", self.receivers),
            ("processor", self.processors),
            ("exporter", self.exporters),
        ];
        for (kind, handles) in stages {
            for (id, mut handle) in handles {
                match tokio::time::timeout_at(deadline, &mut handle).await {
                    Ok(Ok(())) => tracing::debug!(component = %id, "{kind} stopped"),
                    Ok(Err(e)) => {
                        tracing::error!(component = %id, error = %e, "{kind} task failed")
                    }
                    Err(_) => {
                        tracing::warn!(component = %id, "{kind} did not stop within the shutdown timeout; aborting it");
                        handle.abort();
                    }
                }
            }
            if kind == "receiver" {
                // Receivers are done: nothing new arrives, so processors and
                // exporters may now bound their remaining work.
                self.pipelines_shutdown.cancel();
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::pipeline::{Batch, BatchNotifier, DeliveryStatus, Finalizers, Payload};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

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
        let config = match load_str("t.yaml", yaml) {
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
        let mut next = Fanout::build(exporters);
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
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = closed.local_addr().expect("addr");
        drop(closed);
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
}
