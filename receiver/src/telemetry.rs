//! The agent's own telemetry: per-component counters of accepted, refused,
//! sent and failed items, exporter queue size and export latency, built on the
//! `opentelemetry` SDK like the collector's `service.telemetry`. Served on a
//! Prometheus endpoint and optionally pushed over OTLP.
//!
//! Metric names follow the collector's (`otelcol_receiver_accepted_log_records`,
//! `otelcol_exporter_sent_metric_points`, `otelcol_exporter_queue_size`,
//! `otelcol_process_uptime`, ...) so that existing dashboards work. Which
//! instruments exist depends on `service.telemetry.metrics.level`: an
//! instrument above the level is never created, so it costs nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::config::{ComponentId, MetricsLevel};
use crate::pipeline::Signal;

/// Series per own instrument before the SDK folds the rest into one
/// `otel.metric.overflow` series. The SDK sizes each instrument's table for
/// its limit up front: at its default of 2,000 the 25 or so instruments held
/// 2.2 MB of empty tables, the largest part of an idle agent's heap. Own
/// series are one per component (and signal or reason), so 128 is far above
/// any real configuration's count.
pub const OWN_SERIES_LIMIT: usize = 128;

/// The meter provider's one view: every instrument as declared, with
/// [`OWN_SERIES_LIMIT`].
pub fn own_series_limit(
    _: &opentelemetry_sdk::metrics::Instrument,
) -> Option<opentelemetry_sdk::metrics::Stream> {
    opentelemetry_sdk::metrics::Stream::builder()
        .with_cardinality_limit(OWN_SERIES_LIMIT)
        .build()
        .ok()
}

/// Handles to create per-component instruments from.
pub struct Telemetry {
    meter: Meter,
    provider: Option<SdkMeterProvider>,
    level: MetricsLevel,
    /// Keeps the process metrics' callbacks registered.
    _process: Option<ProcessMetrics>,
    /// The signals of the pipelines each exporter is in (by exporter id),
    /// set by the topology before it builds them: one queue series each.
    exporter_signals: Mutex<HashMap<String, Vec<Signal>>>,
}

impl Telemetry {
    /// Instruments that record nothing (tests, `level: none`).
    pub fn noop() -> Arc<Self> {
        let provider = SdkMeterProvider::builder().build();
        Arc::new(Telemetry {
            meter: provider.meter("oomscope"),
            provider: Some(provider),
            level: MetricsLevel::None,
            _process: None,
            exporter_signals: Mutex::default(),
        })
    }

    /// Telemetry recorded by `provider` at `level`, with the process
    /// metrics (`otelcol_process_*`).
    pub fn new(provider: SdkMeterProvider, level: MetricsLevel) -> Arc<Self> {
        let meter = provider.meter("oomscope");
        let process = (level >= MetricsLevel::Basic).then(|| ProcessMetrics::register(&meter));
        Arc::new(Telemetry {
            meter,
            provider: Some(provider),
            level,
            _process: process,
            exporter_signals: Mutex::default(),
        })
    }

    /// The configured `metrics.level`.
    pub fn level(&self) -> MetricsLevel {
        self.level
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
            failed: SignalCounters::new(
                &self.meter,
                "otelcol_receiver_failed",
                "that failed to be processed by the receiver due to internal errors",
            ),
            unauthenticated: (self.level >= MetricsLevel::Normal).then(|| {
                self.meter
                    .u64_counter("oomscope_receiver_unauthenticated_requests")
                    .with_unit("{request}")
                    .with_description(
                        "Number of requests refused by the receiver's authenticator (HTTP 401, gRPC UNAUTHENTICATED), by reason",
                    )
                    .build()
            }),
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

    /// `otelcol_processor_incoming_items` and `_outgoing_items` of processor
    /// `id` in a pipeline of `signal`, as the collector's processorhelper
    /// counts them: items handed to the processor, and items it handed on.
    pub fn processor_items(&self, id: &ComponentId, signal: Signal) -> (ItemCounter, ItemCounter) {
        let attrs: Arc<[KeyValue]> = Arc::new([
            KeyValue::new("processor", id.to_string()),
            KeyValue::new("otel_signal", signal.as_str()),
        ]);
        let make = |name: &'static str, what: &'static str| ItemCounter {
            counter: self
                .meter
                .u64_counter(name)
                .with_unit("{item}")
                .with_description(what)
                .build(),
            attrs: Arc::clone(&attrs),
        };
        (
            make(
                "otelcol_processor_incoming_items",
                "Number of items passed to the processor.",
            ),
            make(
                "otelcol_processor_outgoing_items",
                "Number of items emitted from the processor.",
            ),
        )
    }

    /// A gauge of `processor`'s state at `level` and above: `observe` is
    /// read at each collection (the memory limiter's refusing state).
    pub fn processor_gauge(
        &self,
        id: &ComponentId,
        signal: Signal,
        level: MetricsLevel,
        name: &'static str,
        description: &'static str,
        observe: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Option<opentelemetry::metrics::ObservableGauge<i64>> {
        if self.level < level {
            return None;
        }
        let attrs = [
            KeyValue::new("processor", id.to_string()),
            KeyValue::new("otel_signal", signal.as_str()),
        ];
        Some(
            self.meter
                .i64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |obs| obs.observe(observe(), &attrs))
                .build(),
        )
    }

    /// Records the signals of the pipelines exporter `id` is in, for its
    /// queue gauges' `data_type` series (call before [`Telemetry::exporter`]).
    pub fn set_exporter_signals(&self, id: &ComponentId, signals: &[Signal]) {
        let mut known = self
            .exporter_signals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut signals = signals.to_vec();
        signals.sort_by_key(|s| s.as_str());
        signals.dedup();
        known.insert(id.to_string(), signals);
    }

    /// Exporter instruments. The queue gauges have one series per signal
    /// the exporter is in a pipeline of (`data_type`, as in the collector,
    /// whose exporters have one queue per signal): the size is that signal's
    /// share of the one queue, the capacity the whole queue's (either signal
    /// may fill it). Both are in the unit of `sending_queue::sizer`.
    pub fn exporter(&self, id: &ComponentId, queue_capacity: usize) -> ExporterMetrics {
        let attrs: Arc<[KeyValue]> = Arc::new([KeyValue::new("exporter", id.to_string())]);
        let signals = self
            .exporter_signals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id.to_string())
            .cloned()
            // Not built by a topology (tests): both signals.
            .unwrap_or_else(|| vec![Signal::Logs, Signal::Metrics]);
        let series: Arc<[(Signal, [KeyValue; 2])]> = signals
            .iter()
            .map(|&signal| {
                (
                    signal,
                    [
                        KeyValue::new("exporter", id.to_string()),
                        KeyValue::new("data_type", signal.as_str()),
                    ],
                )
            })
            .collect();
        let queue_size: Arc<[AtomicI64; 2]> = Arc::new([AtomicI64::new(0), AtomicI64::new(0)]);
        let size_for_cb = Arc::clone(&queue_size);
        let series_for_cb = Arc::clone(&series);
        let gauge = self
            .meter
            .i64_observable_gauge("otelcol_exporter_queue_size")
            .with_description(
                "Current size of the sending queue, in the unit of sending_queue::sizer",
            )
            .with_callback(move |obs| {
                for (signal, attrs) in series_for_cb.iter() {
                    obs.observe(
                        size_for_cb[signal_index(*signal)].load(Ordering::Relaxed),
                        attrs,
                    );
                }
            })
            .build();
        let series_for_cap = Arc::clone(&series);
        let capacity_gauge = self
            .meter
            .i64_observable_gauge("otelcol_exporter_queue_capacity")
            .with_description("Capacity of the sending queue, in the unit of sending_queue::sizer")
            .with_callback(move |obs| {
                for (_, attrs) in series_for_cap.iter() {
                    obs.observe(i64::try_from(queue_capacity).unwrap_or(i64::MAX), attrs);
                }
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
            // A histogram per exporter is the costly kind: `detailed` only,
            // as the collector keeps its duration histograms there.
            latency: (self.level >= MetricsLevel::Detailed).then(|| {
                self.meter
                    .f64_histogram("oomscope_exporter_export_duration")
                    .with_unit("s")
                    .with_description("Duration of one export request, retries included")
                    .with_boundaries(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ])
                    .build()
            }),
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
    failed: SignalCounters,
    unauthenticated: Option<Counter<u64>>,
    attrs: Arc<[KeyValue; 2]>,
}

impl ReceiverMetrics {
    pub fn accepted(&self, signal: Signal, items: usize) {
        self.accepted.add(signal, items, &self.attrs[..]);
    }
    pub fn refused(&self, signal: Signal, items: usize) {
        self.refused.add(signal, items, &self.attrs[..]);
    }
    /// Items the pipeline did not take: refused by it (back-pressure, a
    /// rejection: the collector's `refused`), or lost to the agent itself
    /// shutting down under them (the collector's `failed`, an internal error).
    pub fn not_accepted(
        &self,
        signal: Signal,
        items: usize,
        error: &crate::pipeline::ConsumeError,
    ) {
        match error {
            crate::pipeline::ConsumeError::Shutdown => self.failed(signal, items),
            _ => self.refused(signal, items),
        }
    }
    /// Items the receiver read but could not hand on because of its own
    /// failure.
    pub fn failed(&self, signal: Signal, items: usize) {
        self.failed.add(signal, items, &self.attrs[..]);
    }
    /// A request refused by the authenticator, before its items were read.
    pub fn unauthenticated(&self, reason: &'static str) {
        let Some(unauthenticated) = &self.unauthenticated else {
            return;
        };
        let [receiver, transport] = &*self.attrs;
        unauthenticated.add(
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
    latency: Option<Histogram<f64>>,
    /// Per signal ([`signal_index`]), in the sizer's unit.
    queue_size: Arc<[AtomicI64; 2]>,
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
        if let Some(latency) = &self.latency {
            latency.record(d.as_secs_f64(), &self.attrs);
        }
    }
    /// `signal`'s share of the sending queue, in the sizer's unit.
    pub fn set_queue_size(&self, signal: Signal, n: u64) {
        self.queue_size[signal_index(signal)]
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
    }
}

/// One item counter with its attributes (processor incoming/outgoing).
#[derive(Clone)]
pub struct ItemCounter {
    counter: Counter<u64>,
    attrs: Arc<[KeyValue]>,
}

impl ItemCounter {
    pub fn add(&self, items: usize) {
        if items > 0 {
            self.counter.add(items as u64, &self.attrs);
        }
    }
}

/// The collector's process metrics (`service/internal/proctelemetry`), read
/// from the kernel at each collection: nothing runs between collections.
struct ProcessMetrics {
    _instruments: (
        opentelemetry::metrics::ObservableCounter<f64>,
        opentelemetry::metrics::ObservableCounter<f64>,
        opentelemetry::metrics::ObservableGauge<i64>,
    ),
    _runtime: (
        opentelemetry::metrics::ObservableGauge<i64>,
        opentelemetry::metrics::ObservableCounter<u64>,
        opentelemetry::metrics::ObservableGauge<i64>,
    ),
}

impl ProcessMetrics {
    fn register(meter: &Meter) -> Self {
        let started = std::time::Instant::now();
        let uptime = meter
            .f64_observable_counter("otelcol_process_uptime")
            .with_unit("s")
            .with_description("Uptime of the process")
            .with_callback(move |obs| obs.observe(started.elapsed().as_secs_f64(), &[]))
            .build();
        let cpu = meter
            .f64_observable_counter("otelcol_process_cpu_seconds")
            .with_unit("s")
            .with_description("Total CPU user and system time in seconds")
            .with_callback(|obs| {
                if let Some(seconds) = process_cpu_seconds() {
                    obs.observe(seconds, &[]);
                }
            })
            .build();
        let rss = meter
            .i64_observable_gauge("otelcol_process_memory_rss")
            .with_unit("By")
            .with_description("Total physical memory (resident set size)")
            .with_callback(|obs| {
                if let Some(bytes) = process_rss_bytes() {
                    obs.observe(i64::try_from(bytes).unwrap_or(i64::MAX), &[]);
                }
            })
            .build();
        // Go's runtime.MemStats equivalents, from the counting allocator
        // (`heap_stats`); absent where it is not the global allocator.
        let heap_alloc = meter
            .i64_observable_gauge("otelcol_process_runtime_heap_alloc_bytes")
            .with_unit("By")
            .with_description("Bytes of allocated heap objects (allocated and not yet freed)")
            .with_callback(|obs| {
                if let Some(h) = crate::heap_stats::heap_stats() {
                    obs.observe(i64::try_from(h.live).unwrap_or(i64::MAX), &[]);
                }
            })
            .build();
        let total_alloc = meter
            .u64_observable_counter("otelcol_process_runtime_total_alloc_bytes")
            .with_unit("By")
            .with_description("Cumulative bytes allocated for heap objects")
            .with_callback(|obs| {
                if let Some(h) = crate::heap_stats::heap_stats() {
                    obs.observe(h.total_allocated, &[]);
                }
            })
            .build();
        let sys = meter
            .i64_observable_gauge("otelcol_process_runtime_total_sys_memory_bytes")
            .with_unit("By")
            .with_description(
                "Total bytes of memory obtained from the OS (the allocator's committed memory)",
            )
            .with_callback(|obs| {
                if let Some(bytes) = crate::heap_stats::allocator_committed_bytes() {
                    obs.observe(i64::try_from(bytes).unwrap_or(i64::MAX), &[]);
                }
            })
            .build();
        ProcessMetrics {
            _instruments: (uptime, cpu, rss),
            _runtime: (heap_alloc, total_alloc, sys),
        }
    }
}

/// User plus system CPU time of the whole process (every thread).
fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; checked before use.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Resident set size: `/proc/self/statm`'s second field, in pages.
fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(crate::sysconf::page_size()))
}

/// A Prometheus reader into `registry`, shaped as the collector's default
/// pull reader: no scope labels, no unit suffixes (`without_units`,
/// `without_scope_info`), the resource as `target_info`. Counters keep their
/// `_total` suffix, which is what a Prometheus server stores for the
/// collector's counters (it scrapes OpenMetrics, where `_total` is added).
pub fn prometheus_reader(
    registry: prometheus::Registry,
) -> Result<opentelemetry_prometheus::PrometheusExporter, opentelemetry_sdk::error::OTelSdkError> {
    opentelemetry_prometheus::exporter()
        .with_registry(registry)
        .without_units()
        .scope_info_enabled(false)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Prometheus families `level` creates, after recording one of each
    /// instrument.
    fn families(level: MetricsLevel) -> Vec<prometheus::proto::MetricFamily> {
        let registry = prometheus::Registry::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(prometheus_reader(registry.clone()).expect("reader"))
            .build();
        let telemetry = Telemetry::new(provider, level);
        let id: ComponentId = "otlp".parse().expect("id");
        let receiver = telemetry.receiver(&id, "grpc");
        receiver.accepted(Signal::Logs, 1);
        receiver.failed(Signal::Logs, 1);
        receiver.unauthenticated("missing");
        let (incoming, outgoing) = telemetry.processor_items(&id, Signal::Logs);
        incoming.add(2);
        outgoing.add(1);
        let exporter_metrics = telemetry.exporter(&id, 10);
        exporter_metrics.export_latency(Duration::from_millis(1));
        let _gauge =
            telemetry.processor_gauge(&id, Signal::Logs, MetricsLevel::Normal, "g", "g", || 1);
        registry.gather()
    }

    fn names(level: MetricsLevel) -> Vec<String> {
        families(level)
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }

    #[test]
    fn an_instrument_keeps_its_series_limit_and_folds_the_rest_into_overflow() {
        let registry = prometheus::Registry::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(prometheus_reader(registry.clone()).expect("reader"))
            .with_view(own_series_limit)
            .build();
        let telemetry = Telemetry::new(provider, MetricsLevel::Normal);
        let receivers = OWN_SERIES_LIMIT + 50;
        for n in 0..receivers {
            let id: ComponentId = format!("otlp/r{n}").parse().expect("id");
            telemetry.receiver(&id, "grpc").accepted(Signal::Logs, 1);
        }
        let families = registry.gather();
        let accepted = families
            .iter()
            .find(|f| f.name() == "otelcol_receiver_accepted_log_records_total")
            .expect("the accepted family");
        let series = accepted.get_metric();
        // The limit's series and the overflow one.
        assert_eq!(series.len(), OWN_SERIES_LIMIT + 1);
        let overflow: Vec<_> = series
            .iter()
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "otel_metric_overflow" && l.value() == "true")
            })
            .collect();
        assert_eq!(overflow.len(), 1, "one overflow series");
        // Nothing is lost: the overflow series counts the rest.
        let total: f64 = series.iter().map(|m| m.get_counter().get_value()).sum();
        assert_eq!(total, receivers as f64);
    }

    #[test]
    fn levels_create_more_metrics_from_basic_to_detailed() {
        let basic = names(MetricsLevel::Basic);
        let normal = names(MetricsLevel::Normal);
        let detailed = names(MetricsLevel::Detailed);
        for name in [
            "otelcol_process_uptime_total",
            "otelcol_process_cpu_seconds_total",
            "otelcol_process_memory_rss",
            "otelcol_receiver_accepted_log_records_total",
            "otelcol_receiver_failed_log_records_total",
            "otelcol_processor_incoming_items_total",
            "otelcol_processor_outgoing_items_total",
            "otelcol_exporter_queue_size",
            "target_info",
        ] {
            assert!(
                basic.iter().any(|n| n == name),
                "{name} in basic: {basic:?}"
            );
        }
        let unauthenticated = "oomscope_receiver_unauthenticated_requests_total";
        assert!(!basic.iter().any(|n| n == unauthenticated), "{basic:?}");
        assert!(!basic.iter().any(|n| n == "g"), "{basic:?}");
        assert!(normal.iter().any(|n| n == unauthenticated), "{normal:?}");
        assert!(normal.iter().any(|n| n == "g"));
        let duration = "oomscope_exporter_export_duration";
        assert!(!normal.iter().any(|n| n == duration), "{normal:?}");
        assert!(detailed.iter().any(|n| n == duration), "{detailed:?}");
        assert!(basic.len() < normal.len() && normal.len() < detailed.len());
    }

    #[test]
    fn processor_items_carry_the_signal_and_process_metrics_read_the_kernel() {
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(process_rss_bytes().is_some_and(|b| b > 0));
        let families = families(MetricsLevel::Basic);
        let family = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let rss = family("otelcol_process_memory_rss");
        assert!(rss
            .get_metric()
            .iter()
            .any(|m| m.get_gauge().get_value() > 0.0));
        let incoming = family("otelcol_processor_incoming_items_total");
        let labels: Vec<(String, String)> = incoming.get_metric()[0]
            .get_label()
            .iter()
            .map(|l| (l.name().to_string(), l.value().to_string()))
            .collect();
        assert!(
            labels.contains(&("otel_signal".to_string(), "logs".to_string())),
            "{labels:?}"
        );
        assert!(
            labels.contains(&("processor".to_string(), "otlp".to_string())),
            "{labels:?}"
        );
    }

    /// One queue series per signal the exporter is in a pipeline of, with
    /// the collector's `data_type` label; the size is that signal's share.
    #[test]
    fn queue_gauges_carry_the_data_type() {
        let registry = prometheus::Registry::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(prometheus_reader(registry.clone()).expect("reader"))
            .build();
        let telemetry = Telemetry::new(provider, MetricsLevel::Basic);
        let both: ComponentId = "otlp".parse().expect("id");
        let logs_only: ComponentId = "otlp/logs".parse().expect("id");
        telemetry.set_exporter_signals(&both, &[Signal::Metrics, Signal::Logs, Signal::Logs]);
        telemetry.set_exporter_signals(&logs_only, &[Signal::Logs]);
        let m = telemetry.exporter(&both, 100);
        m.set_queue_size(Signal::Logs, 7);
        m.set_queue_size(Signal::Metrics, 3);
        let l = telemetry.exporter(&logs_only, 50);
        l.set_queue_size(Signal::Logs, 2);
        let families = registry.gather();
        let series = |name: &str| -> Vec<(String, String, i64)> {
            let family = families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let mut out: Vec<(String, String, i64)> = family
                .get_metric()
                .iter()
                .map(|m| {
                    let label = |k: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == k)
                            .map(|l| l.value().to_string())
                            .unwrap_or_default()
                    };
                    (
                        label("exporter"),
                        label("data_type"),
                        m.get_gauge().get_value() as i64,
                    )
                })
                .collect();
            out.sort();
            out
        };
        let s = |e: &str, d: &str, v: i64| (e.to_string(), d.to_string(), v);
        assert_eq!(
            series("otelcol_exporter_queue_size"),
            [
                s("otlp", "logs", 7),
                s("otlp", "metrics", 3),
                s("otlp/logs", "logs", 2)
            ]
        );
        assert_eq!(
            series("otelcol_exporter_queue_capacity"),
            [
                s("otlp", "logs", 100),
                s("otlp", "metrics", 100),
                s("otlp/logs", "logs", 50)
            ]
        );
    }
}
