//! The persistent sending queue: requests written to a `file_storage`
//! extension's crash-safe FIFO before `consume` returns, so that they survive
//! kill -9, and the workers that send and delete them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::backoff::requeue_pause;
use super::disk_codec::{size_from_head, size_of_stored, COUNTED_HEAD};
use super::{
    decode_request, encode_request, join_workers, wait_for_room, Core, ExportClient, Outcome,
    QueueConfig, QueuedData, RequestSize, DRAIN_ENQUEUE_WAIT,
};
use crate::extensions::file_storage::{PersistentQueue, Popped};
use crate::pipeline::{
    Batch, ConsumeError, Consumer, DeliveryStatus, DynConsumer, Finalizers, Signal,
};

/// While the persistent queue's storage cannot be written (a full disk), a
/// waiting request tries again after this long at first, then up to
/// [`STORAGE_RETRY_MAX`].
const STORAGE_RETRY_MIN: Duration = Duration::from_millis(100);
const STORAGE_RETRY_MAX: Duration = Duration::from_secs(2);

/// The persistent queue's state shared by the consumer and the workers.
struct PersistentShared {
    disk: PersistentQueue,
    /// Free places, in the sizer's unit: a push takes its size; they come
    /// back when the item leaves the queue (sent, rejected, skipped), not
    /// when a worker takes it, so what is on disk, taken or waiting, never
    /// exceeds the capacity.
    room: Semaphore,
    /// What was found on disk beyond `queue_size` (the last run had a larger
    /// one, or another sizer): that many places are not given back, so the
    /// bound is restored.
    debt: AtomicU64,
    /// One permit per item waiting on disk.
    ready: Semaphore,
    capacity: usize,
    /// Each item on disk (waiting or taken) by sequence number: its signal
    /// and its size in the sizer's unit, to give back when it leaves.
    sizes: Mutex<HashMap<u64, (Signal, u32)>>,
}

impl PersistentShared {
    fn give_back_room(&self, n: u64) {
        let mut paid = 0;
        let _ = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                paid = d.min(n);
                Some(d - paid)
            });
        let rest = usize::try_from(n - paid).unwrap_or(usize::MAX);
        if rest > 0 {
            self.room.add_permits(rest);
        }
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Signal, u32)>> {
        self.sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Item `seq` left the queue: its places and its share come back.
    fn item_left(&self, core: &Core, seq: u64) {
        let entry = self.sizes().remove(&seq);
        if let Some((signal, size)) = entry {
            self.give_back_room(u64::from(size));
            core.queue_shrank(signal, u64::from(size));
        }
    }
}

/// What each item found on disk holds, for a restarted queue's accounting:
/// read from the count stored ahead of each request, or (items written by
/// an earlier version) by decoding it. Blocking I/O. An item that cannot be
/// read is left out: its `pop` skips it.
pub(super) fn recount(disk: &PersistentQueue) -> Vec<(u64, RequestSize)> {
    disk.pending_heads(COUNTED_HEAD)
        .into_iter()
        .filter_map(|item| {
            let size = match size_from_head(&item.head, item.len) {
                Ok(Some(size)) => Ok(size),
                Ok(None) => disk
                    .read_pending(item.seq)
                    .and_then(|data| size_of_stored(&data)),
                Err(e) => Err(e),
            };
            match size {
                Ok(size) => Some((item.seq, size)),
                Err(reason) => {
                    tracing::debug!(seq = item.seq, %reason, "cannot count a persistent queue item; it is skipped when taken");
                    None
                }
            }
        })
        .collect()
}

pub(super) fn spawn_persistent(
    core: Arc<Core>,
    client: Arc<dyn ExportClient>,
    queue: &QueueConfig,
    disk: PersistentQueue,
    resumed: Vec<(u64, RequestSize)>,
) -> (DynConsumer, JoinHandle<()>) {
    let capacity = queue.queue_size.min(Semaphore::MAX_PERMITS);
    let mut sizes = HashMap::with_capacity(resumed.len());
    let mut total: u64 = 0;
    for (seq, size) in &resumed {
        // A stored size beyond u32 cannot come from this queue (items are
        // smaller than 4 GiB): it counts as the largest.
        let units = u32::try_from(size.in_unit(core.sizer)).unwrap_or(u32::MAX);
        sizes.insert(*seq, (size.signal, units));
        total = total.saturating_add(u64::from(units));
        core.queue_grew(size.signal, u64::from(units));
    }
    let capacity_units = u64::try_from(capacity).unwrap_or(u64::MAX);
    let free = usize::try_from(capacity_units.saturating_sub(total)).unwrap_or(capacity);
    let shared = Arc::new(PersistentShared {
        room: Semaphore::new(free),
        debt: AtomicU64::new(total.saturating_sub(capacity_units)),
        ready: Semaphore::new(disk.len().min(Semaphore::MAX_PERMITS)),
        disk,
        capacity,
        sizes: Mutex::new(sizes),
    });
    // Workers stop at shutdown or when the consumer is dropped.
    let stop = core.shutdown.child_token();
    let dropped = CancellationToken::new();
    let mut workers = JoinSet::new();
    for _ in 0..queue.num_consumers {
        workers.spawn(persistent_worker(
            Arc::clone(&core),
            Arc::clone(&shared),
            stop.clone(),
        ));
    }
    let consumer = PersistentQueueConsumer {
        core: Arc::clone(&core),
        shared: Arc::clone(&shared),
        block_on_overflow: queue.block_on_overflow,
        _dropped: dropped.clone().drop_guard(),
    };
    let handle = tokio::spawn(async move {
        dropped.cancelled().await;
        stop.cancel();
        join_workers(&core.id, workers).await;
        client.shutdown().await;
        tracing::debug!(
            exporter = %core.id,
            left_on_disk = shared.disk.len(),
            "exporter stopped; the persistent queue resumes on the next start"
        );
    });
    (Arc::new(consumer), handle)
}

/// Persistent queue: `consume` returns once the request is on disk.
struct PersistentQueueConsumer {
    core: Arc<Core>,
    shared: Arc<PersistentShared>,
    block_on_overflow: bool,
    _dropped: DropGuard,
}

#[async_trait]
impl Consumer for PersistentQueueConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        if items == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        let capacity = self.shared.capacity;
        let size = RequestSize::of_in_unit(&batch.payload, self.core.sizer);
        let fits = u32::try_from(size)
            .ok()
            .filter(|s| usize::try_from(*s).is_ok_and(|s| s <= capacity));
        let Some(size) = fits else {
            return Err(self
                .core
                .too_large(signal, items, batch.finalizers, size, capacity));
        };
        match self.shared.room.try_acquire_many(size) {
            Ok(places) => places.forget(),
            Err(TryAcquireError::Closed) => return Err(ConsumeError::Shutdown),
            Err(TryAcquireError::NoPermits) if !self.block_on_overflow => {
                return Err(self
                    .core
                    .queue_full(signal, items, batch.finalizers, capacity))
            }
            Err(TryAcquireError::NoPermits) => {
                match wait_for_room(&self.core.shutdown, self.shared.room.acquire_many(size)).await
                {
                    Some(Ok(places)) => places.forget(),
                    Some(Err(_closed)) => return Err(ConsumeError::Shutdown),
                    None => {
                        return Err(self
                            .core
                            .queue_full(signal, items, batch.finalizers, capacity))
                    }
                }
            }
        }
        // Holds the places taken above; gives them back unless the write worked.
        let mut place = Place {
            shared: Some(Arc::clone(&self.shared)),
            size,
        };
        let data = batch.payload;
        let mut finalizers = batch.finalizers;
        let mut wait = STORAGE_RETRY_MIN;
        let mut drain_deadline = None;
        loop {
            // An attempt runs to its end even if this future is dropped: the
            // request is then still queued and acknowledged (or, when the
            // write failed, its finalizers and place are dropped with the
            // result: reported as failed, place given back).
            let shared = Arc::clone(&self.shared);
            let core = Arc::clone(&self.core);
            let payload = Arc::clone(&data);
            let written = tokio::task::spawn_blocking(move || {
                match shared.disk.push(&encode_request(&payload)) {
                    Ok(seq) => {
                        place.keep();
                        // Counted before a worker can take it.
                        shared.sizes().insert(seq, (signal, size));
                        core.queue_grew(signal, u64::from(size));
                        shared.ready.add_permits(1);
                        finalizers.settle(DeliveryStatus::Delivered);
                        Ok(seq)
                    }
                    Err(e) => Err((e, finalizers, place)),
                }
            })
            .await;
            let (error, returned, kept) = match written {
                Ok(Ok(_seq)) => return Ok(()),
                Ok(Err(failed)) => failed,
                // Finalizers and place were dropped with the task.
                Err(e) => {
                    return Err(self.core.queue_write_failed(
                        signal,
                        items,
                        Finalizers::default(),
                        &format!("persistent queue write did not finish: {e}"),
                    ))
                }
            };
            (finalizers, place) = (returned, kept);
            let detail = format!("{error:#}");
            // Only a failed write (a full disk, above all) is worth waiting
            // for; anything else (an item too large to store) never works.
            if error.downcast_ref::<std::io::Error>().is_none() {
                drop(place);
                finalizers.settle(DeliveryStatus::Rejected);
                self.core.metrics.enqueue_failed(signal, items);
                tracing::error!(exporter = %self.core.id, error = %detail, dropped_items = items, "Cannot store the request in the persistent queue. Dropping data.");
                return Err(ConsumeError::Permanent(format!(
                    "exporter {}: {detail}",
                    self.core.id
                )));
            }
            // The storage extension logs that writes fail, once; the
            // pipeline waits (pushes back) like on a full queue.
            tracing::debug!(exporter = %self.core.id, error = %detail, "persistent queue write failed; waiting for the storage");
            if !self.block_on_overflow {
                drop(place);
                return Err(self
                    .core
                    .queue_write_failed(signal, items, finalizers, &detail));
            }
            if self.core.shutdown.is_cancelled() {
                let deadline =
                    *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_ENQUEUE_WAIT);
                if Instant::now() >= deadline {
                    drop(place);
                    return Err(self
                        .core
                        .queue_write_failed(signal, items, finalizers, &detail));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Shutdown starts the bounded drain wait at once.
                () = self.core.shutdown.cancelled(), if drain_deadline.is_none() => {}
            }
            wait = (wait * 2).min(STORAGE_RETRY_MAX);
        }
    }
}

/// Places in the persistent queue's capacity, given back when dropped
/// unless [`Place::keep`] was called (the item was written).
struct Place {
    shared: Option<Arc<PersistentShared>>,
    size: u32,
}

impl Place {
    fn keep(mut self) {
        self.shared = None;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.give_back_room(u64::from(self.size));
        }
    }
}

async fn persistent_worker(
    core: Arc<Core>,
    shared: Arc<PersistentShared>,
    stop: CancellationToken,
) {
    loop {
        let ready = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            ready = shared.ready.acquire() => ready,
        };
        match ready {
            Ok(permit) => permit.forget(),
            Err(_closed) => break,
        }
        // `ready` counts waiting items, so something is there.
        let Some(popped) = take_item(&core, &shared, PersistentQueue::pop).await else {
            continue;
        };
        // A taken item keeps its place until it leaves the queue, so that an
        // item put back after a failed export does not push the queue past
        // its capacity.
        let item = match popped {
            Popped::Item(item) => item,
            Popped::Skipped { seq } => {
                shared.item_left(&core, seq);
                continue;
            }
        };
        let payload = match decode_request(&item.data) {
            Ok(payload) => payload,
            Err(reason) => {
                tracing::warn!(exporter = %core.id, file = %shared.disk.item_path(item.seq).display(), %reason, "skipping an undecodable persistent queue item");
                remove_item(&core, &shared, item.seq).await;
                continue;
            }
        };
        let counted = (payload.signal(), payload.item_count());
        let data = QueuedData::Payload(Arc::new(payload));
        let started = Instant::now();
        let outcome = core.export_with_retry(&data, &stop).await;
        if let Outcome::Stopped(error) = &outcome {
            tracing::debug!(exporter = %core.id, seq = item.seq, error = %error.message, "export interrupted by shutdown; the item stays queued");
            shared.disk.release(item.seq);
            shared.ready.add_permits(1);
            continue;
        }
        if let Outcome::GaveUp { error, why } = &outcome {
            // Acknowledged as durable when it was written: a retryable
            // failure must not delete it. It goes back to the queue and is
            // tried again after a pause; only a permanent rejection (or an
            // undecodable item) deletes an item.
            let pause = requeue_pause(&core.retry);
            if let Some(suppressed) = core.log.allow("requeue") {
                tracing::warn!(
                    exporter = %core.id,
                    error = %error.message,
                    reason = why,
                    seq = item.seq,
                    retry_in = ?pause,
                    suppressed,
                    "Exporting failed. The request stays in the persistent queue and will be retried."
                );
            }
            core.metrics.export_latency(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
            shared.disk.release(item.seq);
            shared.ready.add_permits(1);
            continue;
        }
        // Acknowledged when it was written; what is left is accounting.
        core.finish(counted, Finalizers::default(), &outcome, started);
        remove_item(&core, &shared, item.seq).await;
    }
}

/// Takes the next item off the disk (blocking I/O, on a blocking thread).
/// The caller holds a `ready` permit for it: if the read task fails (panics),
/// the permit is given back, so that the item is not stranded.
async fn take_item(
    core: &Core,
    shared: &Arc<PersistentShared>,
    pop: fn(&PersistentQueue) -> Option<Popped>,
) -> Option<Popped> {
    let taking = Arc::clone(shared);
    match tokio::task::spawn_blocking(move || pop(&taking.disk)).await {
        Ok(popped) => popped,
        Err(e) => {
            tracing::error!(exporter = %core.id, error = %e, "reading the persistent queue failed");
            shared.ready.add_permits(1);
            None
        }
    }
}

/// Deletes a finished item and gives its place back (an item whose file
/// could not be deleted is no longer tracked either: it is sent again after
/// a restart).
async fn remove_item(core: &Core, shared: &Arc<PersistentShared>, seq: u64) {
    let removing = Arc::clone(shared);
    let removed = tokio::task::spawn_blocking(move || removing.disk.remove(seq)).await;
    shared.item_left(core, seq);
    let error = match removed {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => e.to_string(),
    };
    // Not a loss: the item is sent again after a restart.
    tracing::warn!(exporter = %core.id, seq, %error, "cannot delete a finished persistent queue item");
}

impl Core {
    /// A request the persistent queue could not store (and will not wait
    /// for): counted, refused (the sender may offer it again). Failing
    /// writes themselves are logged once by the storage extension.
    fn queue_write_failed(
        &self,
        signal: Signal,
        items: usize,
        finalizers: Finalizers,
        error: &str,
    ) -> ConsumeError {
        self.metrics.enqueue_failed(signal, items);
        finalizers.settle(DeliveryStatus::Failed);
        if let Some(suppressed) = self.log.allow("queue_write") {
            tracing::warn!(exporter = %self.id, %error, refused_items = items, suppressed, "Cannot write to the persistent queue. Refusing data.");
        }
        ConsumeError::refused(format!("exporter {}: {error}", self.id))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    use super::*;
    use crate::config::GoDuration;
    use crate::exporters::helper::tests::{
        batch, consume, context, log_payload, log_request_bytes, metered_context, persistent_queue,
        queue_gauge, settings, start, status, stop, untimed, ScriptedClient, Step, HANG,
    };
    use crate::exporters::helper::{ExportError, ExportResponse, LogLimiter, RetryConfig, Sizer};
    use crate::pipeline::DeliveryStatus;

    fn queue_files(dir: &Path) -> Vec<String> {
        let q = dir.join("exporter_otlp_backend/queue");
        let mut names: Vec<String> = std::fs::read_dir(&q)
            .unwrap_or_else(|e| panic!("{}: {e}", q.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".item"))
            .collect();
        names.sort();
        names
    }

    /// Real-time tests (the persistent queue does its file I/O on blocking
    /// threads, which paused time does not suit) are bounded as a whole, so
    /// that a broken one fails within a minute.
    async fn bounded(test: impl std::future::Future<Output = ()>) {
        let finished = tokio::time::timeout(Duration::from_secs(60), test).await;
        assert!(finished.is_ok(), "test did not finish within 60 s");
    }

    /// Real time: the persistent queue does its file I/O on blocking threads.
    #[tokio::test]
    async fn persistent_queue_survives_a_restart_in_order() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

            // First run: the backend is down; everything is acknowledged once on disk.
            let ctx = context(Some(tmp.path()));
            let down = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &down).await;
            for m in ["a", "b", "c"] {
                let rx = consume(&consumer, m).await;
                assert_eq!(
                    status(rx).await,
                    DeliveryStatus::Delivered,
                    "durably queued"
                );
            }
            down.wait_calls(2).await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            drop(ctx);
            assert_eq!(
                queue_files(tmp.path()).len(),
                3,
                "all three stay on disk, the interrupted one too"
            );

            // Second run (as after kill -9 and restart): resumed, in order, then removed.
            let ctx = context(Some(tmp.path()));
            let up = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &up).await;
            up.wait_calls(3).await;
            let rx = consume(&consumer, "d").await;
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            up.wait_calls(4).await;
            let emptied = tokio::time::timeout(HANG, async {
                while !queue_files(tmp.path()).is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(emptied.is_ok(), "left: {:?}", queue_files(tmp.path()));
            stop(consumer, handle).await;
            assert_eq!(up.markers(), ["a", "b", "c", "d"]);
            assert_eq!(up.calls()[0].1, log_payload("a"));
        })
        .await;
    }

    /// Retries running out must not delete a durably queued item: it goes
    /// back to the queue and is sent once the backend is back. A permanent
    /// rejection deletes it.
    #[tokio::test]
    async fn persistent_queue_keeps_an_item_whose_retries_ran_out() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            // More failures than one retry cycle of 100 ms can use up.
            let mut script: Vec<Step> = (0..10)
                .map(|_| Step::Reply(Err(ExportError::retryable("down"))))
                .collect();
            script.push(Step::Reply(Ok(ExportResponse::default())));
            script.push(Step::Reply(Err(ExportError::permanent("bad request"))));
            let client = ScriptedClient::new(script, None, None);
            let mut s = settings(persistent_queue(1, 10));
            s.retry.max_elapsed_time = GoDuration::from_millis(100);
            let (consumer, handle) = start(&ctx, s, &client).await;
            drop(consume(&consumer, "a").await);
            client.wait_calls(11).await;
            drop(consume(&consumer, "b").await);
            client.wait_calls(12).await;
            let emptied = tokio::time::timeout(HANG, async {
                while !queue_files(tmp.path()).is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(emptied.is_ok(), "left: {:?}", queue_files(tmp.path()));
            stop(consumer, handle).await;
            let markers = client.markers();
            assert_eq!(markers.iter().filter(|m| *m == "a").count(), 11);
            assert_eq!(markers.last().map(String::as_str), Some("b"));
        })
        .await;
    }

    /// A failed read task gives back the `ready` permit it consumed.
    #[tokio::test]
    async fn a_failed_pop_gives_its_permit_back() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let disk =
            PersistentQueue::open(tmp.path().join("q"), false).unwrap_or_else(|e| panic!("{e:#}"));
        let shared = Arc::new(PersistentShared {
            disk,
            room: Semaphore::new(1),
            debt: AtomicU64::new(0),
            ready: Semaphore::new(0),
            capacity: 1,
            sizes: Mutex::default(),
        });
        let ctx = context(None);
        let client: Arc<dyn ExportClient> = ScriptedClient::ok();
        let core = Core {
            id: ctx.id.clone(),
            client,
            timeout: None,
            retry: RetryConfig::default(),
            metrics: ctx.telemetry.exporter(&ctx.id, 1),
            shutdown: CancellationToken::new(),
            log: LogLimiter::default(),
            failed_attempts: AtomicU64::new(0),
            drain_failed: AtomicBool::new(false),
            drain_dropped_requests: AtomicU64::new(0),
            drain_dropped_items: AtomicU64::new(0),
            sizer: crate::exporters::helper::Sizer::Requests,
            queued: Default::default(),
        };
        let popped = take_item(&core, &shared, |_| panic!("simulated read failure")).await;
        assert!(popped.is_none());
        assert_eq!(shared.ready.available_permits(), 1);
    }

    #[tokio::test]
    async fn persistent_queue_skips_corrupt_items() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let down = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &down).await;
            for m in ["a", "b", "c"] {
                drop(consume(&consumer, m).await);
            }
            down.wait_calls(1).await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            drop(ctx);

            let files = queue_files(tmp.path());
            let dir = tmp.path().join("exporter_otlp_backend/queue");
            // "b" is torn in the middle (as after a power loss without fsync).
            let b = dir.join(&files[1]);
            let len = std::fs::metadata(&b)
                .map(|m| m.len())
                .unwrap_or_else(|e| panic!("{e}"));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&b)
                .unwrap_or_else(|e| panic!("{e}"));
            f.set_len(len / 2).unwrap_or_else(|e| panic!("{e}"));

            let ctx = context(Some(tmp.path()));
            let up = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &up).await;
            up.wait_calls(2).await;
            stop(consumer, handle).await;
            assert_eq!(up.markers(), ["a", "c"]);
            assert!(queue_files(tmp.path()).is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn persistent_queue_is_bounded() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let gate = Arc::new(Semaphore::new(0));
            let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
            let queue = QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 2)
            };
            let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
            drop(consume(&consumer, "1").await);
            client.wait_calls(1).await;
            drop(consume(&consumer, "2").await);
            // "1" being exported still holds its place.
            let (b, third) = batch("3");
            assert!(matches!(
                consumer.consume(b).await,
                Err(ConsumeError::Refused { .. })
            ));
            assert_eq!(status(third).await, DeliveryStatus::Failed);
            gate.add_permits(100);
            client.wait_calls(2).await;
            // Room again once "1" was sent and removed.
            let rx = consume(&consumer, "4").await;
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            client.wait_calls(3).await;
            stop(consumer, handle).await;
            assert_eq!(client.markers(), ["1", "2", "4"]);
        })
        .await;
    }

    /// An item put back after its retries ran out keeps its place: the items
    /// on disk never exceed `queue_size`, however long the backend fails.
    #[tokio::test]
    async fn persistent_queue_requeue_stays_within_capacity() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let client =
                ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let mut s = settings(QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 2)
            });
            s.retry.max_elapsed_time = GoDuration::from_millis(50);
            let (consumer, handle) = start(&ctx, s, &client).await;
            drop(consume(&consumer, "a").await);
            drop(consume(&consumer, "b").await);
            // "a" has failed, been put back and been taken again.
            client.wait_calls(8).await;
            for marker in ["c", "d"] {
                let (b, rx) = batch(marker);
                assert!(
                    matches!(consumer.consume(b).await, Err(ConsumeError::Refused { .. })),
                    "{marker} must not fit"
                );
                assert_eq!(status(rx).await, DeliveryStatus::Failed);
                assert_eq!(queue_files(tmp.path()).len(), 2);
            }
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            assert_eq!(queue_files(tmp.path()).len(), 2);
        })
        .await;
    }

    /// A write that fails (a full disk; here, the queue directory is gone)
    /// makes the request wait, like a full queue, until the write works:
    /// pushed back, never dropped. Without `block_on_overflow` it is refused.
    #[tokio::test]
    async fn persistent_queue_waits_while_storage_cannot_be_written() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let client = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &client).await;
            let dir = tmp.path().join("exporter_otlp_backend/queue");
            let moved = tmp.path().join("moved");
            std::fs::rename(&dir, &moved).unwrap_or_else(|e| panic!("{e}"));
            let (b, rx) = batch("a");
            let waiting = {
                let consumer = Arc::clone(&consumer);
                tokio::spawn(async move { consumer.consume(b).await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "nothing could be written yet");
            std::fs::rename(&moved, &dir).unwrap_or_else(|e| panic!("{e}"));
            let consumed = tokio::time::timeout(HANG, waiting).await;
            assert!(matches!(consumed, Ok(Ok(Ok(())))), "{consumed:?}");
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            client.wait_calls(1).await;
            stop(consumer, handle).await;
            assert_eq!(client.markers(), ["a"]);

            let ctx = context(Some(tmp.path()));
            let queue = QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 10)
            };
            let (consumer, handle) = start(&ctx, settings(queue), &client).await;
            std::fs::rename(&dir, &moved).unwrap_or_else(|e| panic!("{e}"));
            let (b, rx) = batch("b");
            assert!(matches!(
                consumer.consume(b).await,
                Err(ConsumeError::Refused { .. })
            ));
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
            stop(consumer, handle).await;
        })
        .await;
    }

    /// `sizer: items` and `bytes` on disk: items being exported still
    /// count; after a restart the queue recounts what it holds (from the
    /// count stored ahead of each request, or by decoding an item an
    /// earlier version wrote), per signal, in whichever unit is configured.
    #[tokio::test]
    async fn persistent_queue_recounts_items_and_bytes_after_a_restart() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let items_queue = QueueConfig {
                sizer: Sizer::Items,
                block_on_overflow: false,
                ..persistent_queue(1, 5)
            };
            let down = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let refuses = |consumer: DynConsumer, marker: &'static str| async move {
                let (b, rx) = batch(marker);
                let refused = consumer.consume(b).await;
                assert!(
                    matches!(refused, Err(ConsumeError::Refused { .. })),
                    "{marker}: {refused:?}"
                );
                assert_eq!(status(rx).await, DeliveryStatus::Failed);
            };

            let (ctx, registry) = metered_context(Some(tmp.path()));
            let (consumer, handle) = start(&ctx, settings(items_queue.clone()), &down).await;
            drop(consume(&consumer, "a").await);
            down.wait_calls(1).await;
            drop(consume(&consumer, "b").await);
            let size =
                |r: &prometheus::Registry, t| queue_gauge(r, "otelcol_exporter_queue_size", t);
            assert_eq!(
                (size(&registry, "logs"), size(&registry, "metrics")),
                (4, 0)
            );
            // "a" being exported still holds its 2 items: 4 of 5 are taken.
            refuses(Arc::clone(&consumer), "c").await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            drop(ctx);
            assert_eq!(queue_files(tmp.path()).len(), 2);

            // An item written by an earlier version (no stored count).
            {
                let dir = tmp.path().join("exporter_otlp_backend/queue");
                let disk = PersistentQueue::open(dir, false).unwrap_or_else(|e| panic!("{e:#}"));
                let mut old = vec![1u8];
                old.extend_from_slice(&encode_request(&log_payload("z"))[COUNTED_HEAD..]);
                disk.push(&old).unwrap_or_else(|e| panic!("{e:#}"));
            }
            let on_disk = 3;

            // Restarted with the backend down: the share is recounted.
            for (sizer, unit) in [
                (Sizer::Items, 2),
                (
                    Sizer::Bytes,
                    i64::try_from(log_request_bytes()).unwrap_or(i64::MAX),
                ),
                (Sizer::Requests, 1),
            ] {
                let (ctx, registry) = metered_context(Some(tmp.path()));
                let queue = QueueConfig {
                    sizer,
                    queue_size: 1000,
                    ..items_queue.clone()
                };
                let (consumer, handle) = start(&ctx, settings(queue), &down).await;
                assert_eq!(size(&registry, "logs"), on_disk * unit, "{sizer:?}");
                assert_eq!(size(&registry, "metrics"), 0, "{sizer:?}");
                ctx.shutdown.cancel();
                stop(consumer, handle).await;
            }

            // Back to 5 items: the 6 on disk are over the bound, so nothing
            // fits until they are sent; nothing was lost.
            let (ctx, _registry) = metered_context(Some(tmp.path()));
            let (consumer, handle) = start(&ctx, settings(items_queue.clone()), &down).await;
            refuses(Arc::clone(&consumer), "d").await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            assert_eq!(queue_files(tmp.path()).len(), 3);
            let up = ScriptedClient::ok();
            let ctx = context(Some(tmp.path()));
            let (consumer, handle) = start(&ctx, settings(items_queue), &up).await;
            up.wait_calls(3).await;
            stop(consumer, handle).await;
            let mut markers = up.markers();
            markers.sort();
            assert_eq!(markers, ["a", "b", "z"]);
        })
        .await;
    }
}
