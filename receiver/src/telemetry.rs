//! The agent's own telemetry: per-component counters of accepted, refused,
//! sent and failed items, exporter queue size and export latency, built on the
//! `opentelemetry` SDK like the collector's `service.telemetry`. Served on a
//! Prometheus endpoint and optionally pushed over OTLP.
//!
//! Metric names follow the collector's (`otelcol_receiver_accepted_log_records`,
//! `otelcol_exporter_sent_metric_points`, `otelcol_exporter_queue_size`, ...)
//! so that existing dashboards work.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::config::ComponentId;
use crate::pipeline::Signal;

/// Handles to create per-component instruments from.
pub struct Telemetry {
    meter: Meter,
    provider: Option<SdkMeterProvider>,
    /// Prometheus registry the `/metrics` endpoint serves (when enabled).
    pub registry: Option<prometheus::Registry>,
}

impl Telemetry {
    /// Instruments that record nothing (tests, `level: none`).
    pub fn noop() -> Arc<Self> {
        let provider = SdkMeterProvider::builder().build();
        Arc::new(Telemetry {
            meter: provider.meter("oomscope"),
            provider: Some(provider),
            registry: None,
        })
    }

    /// Telemetry recorded by `provider`; `registry` is what Prometheus serves.
    pub fn new(provider: SdkMeterProvider, registry: Option<prometheus::Registry>) -> Arc<Self> {
        Arc::new(Telemetry {
            meter: provider.meter("oomscope"),
            provider: Some(provider),
            registry,
        })
    }

    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Flushes pushed metrics; called at shutdown.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.shutdown();
        }
    }

    pub fn receiver(&self, id: &ComponentId, transport: &str) -> ReceiverMetrics {
        let attrs = Arc::new([
            KeyValue::new("receiver", id.to_string()),
            KeyValue::new("transport", transport.to_string()),
        ]);
        ReceiverMetrics {
            accepted: SignalCounters::new(
                &self.meter,
                "otelcol_receiver_accepted",
                "accepted by the receiver and handed to the pipeline",
            ),
            refused: SignalCounters::new(
                &self.meter,
                "otelcol_receiver_refused",
                "refused by the pipeline (returned to the sender as an error)",
            ),
            unauthenticated: self
                .meter
                .u64_counter("oomscope_receiver_unauthenticated_requests")
                .with_unit("{request}")
                .with_description(
                    "Number of requests refused by the receiver's authenticator (HTTP 401, gRPC UNAUTHENTICATED), by reason",
                )
                .build(),
            attrs,
        }
    }

    pub fn processor(&self, id: &ComponentId) -> ProcessorMetrics {
        ProcessorMetrics {
            refused: SignalCounters::new(
                &self.meter,
                "otelcol_processor_refused",
                "refused by the processor",
            ),
            dropped: SignalCounters::new(
                &self.meter,
                "otelcol_processor_dropped",
                "dropped by the processor",
            ),
            attrs: Arc::new([KeyValue::new("processor", id.to_string())]),
        }
    }

    /// Exporter instruments; `queue_capacity` is reported as a gauge.
    pub fn exporter(&self, id: &ComponentId, queue_capacity: usize) -> ExporterMetrics {
        let attrs: Arc<[KeyValue]> = Arc::new([KeyValue::new("exporter", id.to_string())]);
        let queue_size = Arc::new(AtomicI64::new(0));
        let size_for_cb = Arc::clone(&queue_size);
        let attrs_for_cb = Arc::clone(&attrs);
        let gauge = self
            .meter
            .i64_observable_gauge("otelcol_exporter_queue_size")
            .with_description("Current size of the sending queue, in requests")
            .with_callback(move |obs| {
                obs.observe(size_for_cb.load(Ordering::Relaxed), &attrs_for_cb)
            })
            .build();
        let attrs_for_cap = Arc::clone(&attrs);
        let capacity_gauge = self
            .meter
            .i64_observable_gauge("otelcol_exporter_queue_capacity")
            .with_description("Capacity of the sending queue, in requests")
            .with_callback(move |obs| {
                obs.observe(
                    i64::try_from(queue_capacity).unwrap_or(i64::MAX),
                    &attrs_for_cap,
                )
            })
            .build();
        ExporterMetrics {
            sent: SignalCounters::new(
                &self.meter,
                "otelcol_exporter_sent",
                "successfully sent to the destination",
            ),
            send_failed: SignalCounters::new(
                &self.meter,
                "otelcol_exporter_send_failed",
                "that failed to be sent (after retries)",
            ),
            enqueue_failed: SignalCounters::new(
                &self.meter,
                "otelcol_exporter_enqueue_failed",
                "that failed to be added to the sending queue",
            ),
            latency: self
                .meter
                .f64_histogram("oomscope_exporter_export_duration")
                .with_unit("s")
                .with_description("Duration of one export request, retries included")
                .with_boundaries(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
                .build(),
            queue_size,
            attrs,
            _gauges: Arc::new((gauge, capacity_gauge)),
        }
    }
}

/// One counter per signal, so names carry the item kind like the collector's.
#[derive(Clone)]
struct SignalCounters {
    logs: Counter<u64>,
    metrics: Counter<u64>,
}

impl SignalCounters {
    fn new(meter: &Meter, prefix: &str, what: &str) -> Self {
        let make = |signal: Signal| {
            meter
                .u64_counter(format!("{prefix}_{}", signal.item_name()))
                .with_description(format!(
                    "Number of {} {what}",
                    signal.item_name().replace('_', " ")
                ))
                .build()
        };
        SignalCounters {
            logs: make(Signal::Logs),
            metrics: make(Signal::Metrics),
        }
    }

    fn add(&self, signal: Signal, n: usize, attrs: &[KeyValue]) {
        if n == 0 {
            return;
        }
        let c = match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        };
        c.add(n as u64, attrs);
    }
}

#[derive(Clone)]
pub struct ReceiverMetrics {
    accepted: SignalCounters,
    refused: SignalCounters,
    unauthenticated: Counter<u64>,
    attrs: Arc<[KeyValue; 2]>,
}

impl ReceiverMetrics {
    pub fn accepted(&self, signal: Signal, items: usize) {
        self.accepted.add(signal, items, &self.attrs[..]);
    }
    pub fn refused(&self, signal: Signal, items: usize) {
        self.refused.add(signal, items, &self.attrs[..]);
    }
    /// A request refused by the authenticator, before its items were read.
    pub fn unauthenticated(&self, reason: &'static str) {
        let [receiver, transport] = &*self.attrs;
        self.unauthenticated.add(
            1,
            &[
                receiver.clone(),
                transport.clone(),
                KeyValue::new("reason", reason),
            ],
        );
    }
}

#[derive(Clone)]
pub struct ProcessorMetrics {
    refused: SignalCounters,
    dropped: SignalCounters,
    attrs: Arc<[KeyValue; 1]>,
}

impl ProcessorMetrics {
    pub fn refused(&self, signal: Signal, items: usize) {
        self.refused.add(signal, items, &self.attrs[..]);
    }
    pub fn dropped(&self, signal: Signal, items: usize) {
        self.dropped.add(signal, items, &self.attrs[..]);
    }
}

#[derive(Clone)]
pub struct ExporterMetrics {
    sent: SignalCounters,
    send_failed: SignalCounters,
    enqueue_failed: SignalCounters,
    latency: Histogram<f64>,
    queue_size: Arc<AtomicI64>,
    attrs: Arc<[KeyValue]>,
    _gauges: Arc<(
        opentelemetry::metrics::ObservableGauge<i64>,
        opentelemetry::metrics::ObservableGauge<i64>,
    )>,
}

impl ExporterMetrics {
    pub fn sent(&self, signal: Signal, items: usize) {
        self.sent.add(signal, items, &self.attrs);
    }
    pub fn send_failed(&self, signal: Signal, items: usize) {
        self.send_failed.add(signal, items, &self.attrs);
    }
    pub fn enqueue_failed(&self, signal: Signal, items: usize) {
        self.enqueue_failed.add(signal, items, &self.attrs);
    }
    pub fn export_latency(&self, d: Duration) {
        self.latency.record(d.as_secs_f64(), &self.attrs);
    }
    /// The sending queue's current length, in requests.
    pub fn set_queue_size(&self, n: usize) {
        self.queue_size
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}
