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
