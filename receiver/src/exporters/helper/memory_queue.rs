//! The in-memory sending queue: a bounded channel read by `num_consumers`
//! workers. Fast, but lost with the process; `sending_queue::storage` picks
//! the persistent queue instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt as _;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{wait_for_room, Core, EncodedRequest, QueuedData, RequestSize};
use crate::pipeline::{Batch, ConsumeError, Consumer, DeliveryStatus, Finalizers};

/// A request in the in-memory queue.
pub(super) struct Request {
    pub(super) data: QueuedData,
    pub(super) finalizers: Finalizers,
    /// What it holds of the queue, in the sizer's unit.
    pub(super) size: u32,
}

/// In-memory queue: a channel bounded by `room`, `queue_size` places in the
/// sizer's unit (requests being exported do not count), read by
/// `num_consumers` workers. The channel closes when this consumer is
/// dropped; the workers then drain what is left and end.
pub(super) struct MemoryQueueConsumer {
    pub(super) core: Arc<Core>,
    pub(super) tx: async_channel::Sender<Request>,
    pub(super) room: Arc<Semaphore>,
    pub(super) capacity: usize,
    pub(super) block_on_overflow: bool,
    /// Where urgent requests go past the queue; `None` without the lane.
    pub(super) urgent: Option<UrgentLane>,
}

/// At most this many urgent requests of one exporter are exported on the
/// urgent lane at a time (a kill storm's wave, a backend that makes them
/// retry); the next ones take the queue, as ordinary requests do.
pub(super) const URGENT_IN_FLIGHT: usize = 16;

/// Urgent requests' way past the queue: each is exported at once in a task
/// of its own on the urgent lane ([`crate::urgent_lane`]), not behind the
/// queued requests and not on the shared runtime's busy workers.
pub(super) struct UrgentLane {
    pub(super) handle: &'static Handle,
    /// [`URGENT_IN_FLIGHT`] permits.
    pub(super) slots: Arc<Semaphore>,
    /// The exporter's task waits for these at its end, as for its workers.
    pub(super) tasks: TaskTracker,
    /// Cancelled when the exporter's task is dropped unfinished (aborted):
    /// the exports still running end with it.
    pub(super) abort: CancellationToken,
}

impl UrgentLane {
    pub(super) fn new() -> Option<UrgentLane> {
        crate::urgent_lane::handle().map(|handle| UrgentLane {
            handle,
            slots: Arc::new(Semaphore::new(URGENT_IN_FLIGHT)),
            tasks: TaskTracker::new(),
            abort: CancellationToken::new(),
        })
    }

    /// Exports `data` on the lane if a slot is free; hands it back if not.
    fn try_export(
        &self,
        core: &Arc<Core>,
        data: QueuedData,
        finalizers: Finalizers,
    ) -> Result<(), (QueuedData, Finalizers)> {
        // Only an encoded request says it is urgent to the client (which
        // sends it on its urgent connection); and none once the exporter's
        // task has ended.
        if !matches!(data, QueuedData::Encoded(_)) || self.abort.is_cancelled() {
            return Err((data, finalizers));
        }
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            return Err((data, finalizers));
        };
        let core = Arc::clone(core);
        let abort = self.abort.clone();
        self.tasks.spawn_on(
            async move {
                let _slot = slot;
                let counted = (data.signal(), data.item_count());
                let started = Instant::now();
                let export = AssertUnwindSafe(core.export_with_retry(&data, &core.shutdown));
                // Either way out but the last leaves `finalizers` unsettled:
                // the request is reported failed when they drop.
                let outcome = tokio::select! {
                    outcome = export.catch_unwind() => outcome,
                    () = abort.cancelled() => return,
                };
                drop(data);
                match outcome {
                    Ok(outcome) => {
                        core.finish(counted, finalizers, &outcome.stopped_gives_up(), started)
                    }
                    Err(_panic) => {
                        tracing::error!(exporter = %core.id, "an urgent export panicked; its request is reported as failed");
                        core.metrics.send_failed(counted.0, counted.1);
                    }
                }
            },
            self.handle,
        );
        Ok(())
    }
}

#[async_trait]
impl Consumer for MemoryQueueConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        if items == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        // A client that sends protobuf gets the request encoded now: the
        // queue (and the worker, while it sends) holds the encoding, not the
        // decoded records, which go as soon as this batch does. Another
        // client gets it encoded when requests already wait (every worker
        // is busy): a backlog is held as its encoding, a third or less of
        // the decoded records' memory, and decoded again when its turn
        // comes; without a backlog nothing is encoded for it.
        let (finalizers, urgent) = (batch.finalizers, batch.urgent);
        let encode = self.core.client.sends_protobuf() || !self.tx.is_empty();
        let (data, size) = if encode {
            let encoded = EncodedRequest::encode(&batch.payload).marked_urgent(batch.urgent);
            let size = encoded.size().in_unit(self.core.sizer);
            (QueuedData::Encoded(encoded), size)
        } else {
            let size = RequestSize::of_in_unit(&batch.payload, self.core.sizer);
            (QueuedData::Payload(batch.payload), size)
        };
        let capacity = self.capacity;
        let fits = u32::try_from(size)
            .ok()
            .filter(|s| usize::try_from(*s).is_ok_and(|s| s <= capacity));
        let Some(size) = fits else {
            return Err(self
                .core
                .too_large(signal, items, finalizers, size, capacity));
        };
        // Once shutdown has begun, urgent requests drain with the rest.
        let (data, finalizers) = match &self.urgent {
            Some(lane) if urgent && !self.core.shutdown.is_cancelled() => {
                match lane.try_export(&self.core, data, finalizers) {
                    Ok(()) => return Ok(()),
                    Err(back) => back,
                }
            }
            _ => (data, finalizers),
        };
        let places = match self.room.try_acquire_many(size) {
            Ok(places) => places,
            Err(TryAcquireError::Closed) => {
                finalizers.settle(DeliveryStatus::Failed);
                return Err(ConsumeError::Shutdown);
            }
            Err(TryAcquireError::NoPermits) if !self.block_on_overflow => {
                return Err(self.core.queue_full(signal, items, finalizers, capacity))
            }
            Err(TryAcquireError::NoPermits) => {
                // If the wait is abandoned, the batch is dropped with this
                // future: its unsettled finalizers report it as failed.
                match wait_for_room(&self.core.shutdown, self.room.acquire_many(size)).await {
                    Some(Ok(places)) => places,
                    Some(Err(_closed)) => {
                        finalizers.settle(DeliveryStatus::Failed);
                        return Err(ConsumeError::Shutdown);
                    }
                    None => return Err(self.core.queue_full(signal, items, finalizers, capacity)),
                }
            }
        };
        let request = Request {
            data,
            finalizers,
            size,
        };
        match self.tx.try_send(request) {
            Ok(()) => {
                // The worker gives the places back when it takes the request.
                places.forget();
                self.core.queue_grew(signal, u64::from(size));
                Ok(())
            }
            Err(async_channel::TrySendError::Full(r) | async_channel::TrySendError::Closed(r)) => {
                r.finalizers.settle(DeliveryStatus::Failed);
                Err(ConsumeError::Shutdown)
            }
        }
    }
}

pub(super) async fn memory_worker(
    core: Arc<Core>,
    rx: async_channel::Receiver<Request>,
    room: Arc<Semaphore>,
) {
    while let Ok(request) = rx.recv().await {
        room.add_permits(request.size as usize);
        let counted = (request.data.signal(), request.data.item_count());
        core.queue_shrank(counted.0, u64::from(request.size));
        if core.shutdown.is_cancelled() && core.drain_failed.load(Ordering::Relaxed) {
            core.drop_in_drain(counted, request.finalizers);
            continue;
        }
        let started = Instant::now();
        let outcome = core
            .export_with_retry(&request.data, &core.shutdown)
            .await
            .stopped_gives_up();
        drop(request.data);
        core.finish(counted, request.finalizers, &outcome, started);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    use super::URGENT_IN_FLIGHT;
    use crate::config::GoDuration;
    use crate::exporters::helper::disk_codec::COUNTED_HEAD;
    use crate::exporters::helper::tests::Step;
    use crate::exporters::helper::tests::{
        batch, consume, context, log_request_bytes, memory_queue, metered_context, queue_gauge,
        settings, start, status, stop, untimed, ScriptedClient, HANG, REAL_HANG,
    };
    use crate::exporters::helper::{
        encode_request, ExportError, ExportResponse, QueueConfig, Sizer,
    };
    use crate::pipeline::{ConsumeError, DeliveryStatus};

    /// A client that sends protobuf: each request is encoded once, as it is
    /// queued; from then on neither the queue nor the worker holds the
    /// decoded records, and a retry sends the same bytes.
    #[tokio::test(start_paused = true)]
    async fn a_protobuf_client_gets_requests_encoded_once_and_no_records_are_held() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(
            vec![
                Step::Reply(Err(ExportError::retryable("blip"))),
                Step::Reply(Ok(ExportResponse::default())),
            ],
            None,
            Some(Arc::clone(&gate)),
        );
        client.protobuf.store(true, Ordering::SeqCst);
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 4)), &client).await;
        let (first, first_status) = batch("a");
        let (second, second_status) = batch("b");
        let (held_first, held_second) = (
            Arc::downgrade(&first.payload),
            Arc::downgrade(&second.payload),
        );
        let expected = encode_request(&first.payload);
        assert_eq!(consumer.consume(first).await, Ok(()));
        assert_eq!(consumer.consume(second).await, Ok(()));
        // The worker is in its first attempt (blocked), the second request
        // waits in the queue: both only as their encoding.
        client.wait_calls(1).await;
        assert_eq!(held_first.strong_count(), 0, "the worker holds records");
        assert_eq!(held_second.strong_count(), 0, "the queue holds records");
        gate.add_permits(3);
        assert_eq!(status(first_status).await, DeliveryStatus::Delivered);
        assert_eq!(status(second_status).await, DeliveryStatus::Delivered);
        let bodies = client.encoded_bodies();
        assert_eq!(bodies.len(), 3, "a failed attempt, its retry, the second");
        assert_eq!(&bodies[0][..], &expected[COUNTED_HEAD..]);
        assert_eq!(bodies[0], bodies[1], "the retry sends the same bytes");
        assert_eq!(client.markers(), ["a", "a", "b"]);
        stop(consumer, handle).await;
    }

    /// A client that does not send protobuf gets its requests as the
    /// pipeline's records while the queue is empty; once requests wait,
    /// the next ones are held encoded (not as records) and decoded again
    /// for it, to the same records.
    #[tokio::test(start_paused = true)]
    async fn a_backlog_is_held_encoded_for_any_client() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 4)), &client).await;
        let (first, first_status) = batch("a");
        let (second, second_status) = batch("b");
        let (third, third_status) = batch("c");
        let (third_records, held_third) =
            ((*third.payload).clone(), Arc::downgrade(&third.payload));
        assert_eq!(consumer.consume(first).await, Ok(()));
        // The worker takes the first and blocks in the client: the queue is
        // empty when the second comes, not when the third does.
        client.wait_calls(1).await;
        assert_eq!(consumer.consume(second).await, Ok(()));
        assert_eq!(consumer.consume(third).await, Ok(()));
        assert_eq!(held_third.strong_count(), 0, "the queue holds the records");
        gate.add_permits(3);
        for s in [first_status, second_status, third_status] {
            assert_eq!(status(s).await, DeliveryStatus::Delivered);
        }
        assert_eq!(client.markers(), ["a", "b", "c"]);
        assert_eq!(
            client.encoded_bodies().len(),
            1,
            "only the third waited behind another"
        );
        assert_eq!(client.calls().last().map(|(_, p)| p), Some(&third_records));
        stop(consumer, handle).await;
    }

    /// An urgent batch's encoding tells the client so (it may send it apart
    /// from bulk traffic); an ordinary one's does not. (Real time: the
    /// urgent export runs on the lane's runtime, which a paused clock here
    /// would not wait for.)
    #[tokio::test]
    async fn the_client_learns_which_requests_are_urgent() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), None, None);
        client.protobuf.store(true, Ordering::SeqCst);
        client.urgent_lane.store(true, Ordering::SeqCst);
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 4)), &client).await;
        let (bulk, bulk_status) = batch("bulk");
        let (urgent, urgent_status) = batch("oom");
        assert_eq!(consumer.consume(bulk).await, Ok(()));
        assert_eq!(status(bulk_status).await, DeliveryStatus::Delivered);
        assert_eq!(consumer.consume(urgent.urgent()).await, Ok(()));
        assert_eq!(status(urgent_status).await, DeliveryStatus::Delivered);
        assert_eq!(client.markers(), ["bulk", "oom"]);
        assert_eq!(client.encoded_urgent(), [false, true]);
        stop(consumer, handle).await;
    }

    /// A client of the urgent lane that sends protobuf (the gRPC
    /// exporter's kind), held at `gate` when given, behind a started
    /// one-worker queue of 4.
    async fn lane_exporter(
        ctx: &crate::component::BuildContext,
        gate: Option<Arc<Semaphore>>,
    ) -> (
        Arc<ScriptedClient>,
        crate::pipeline::DynConsumer,
        tokio::task::JoinHandle<()>,
    ) {
        let client = ScriptedClient::new(Vec::new(), None, gate);
        client.protobuf.store(true, Ordering::SeqCst);
        client.urgent_lane.store(true, Ordering::SeqCst);
        let (consumer, handle) = start(ctx, untimed(memory_queue(1, 4)), &client).await;
        (client, consumer, handle)
    }

    /// An urgent request is exported at once on the urgent lane: while the
    /// only worker is stuck in a call and a request waits in the queue.
    #[tokio::test]
    async fn an_urgent_request_goes_past_the_queue_on_the_lane() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let (client, consumer, handle) = lane_exporter(&ctx, Some(Arc::clone(&gate))).await;
        let (stuck, stuck_status) = batch("stuck");
        let (queued, queued_status) = batch("queued");
        let (urgent, urgent_status) = batch("oom");
        assert_eq!(consumer.consume(stuck).await, Ok(()));
        client.wait_calls_for(1, REAL_HANG).await;
        assert_eq!(consumer.consume(queued).await, Ok(()));
        assert_eq!(consumer.consume(urgent.urgent()).await, Ok(()));
        client.wait_calls_for(2, REAL_HANG).await;
        assert_eq!(client.markers(), ["stuck", "oom"], "the urgent one is next");
        assert_eq!(client.calls_on_the_lane(), 1, "and it ran on the lane");
        gate.add_permits(3);
        for s in [stuck_status, queued_status, urgent_status] {
            assert_eq!(status(s).await, DeliveryStatus::Delivered);
        }
        assert_eq!(client.markers(), ["stuck", "oom", "queued"]);
        stop(consumer, handle).await;
    }

    /// With every lane slot taken by urgent exports still in progress, the
    /// next urgent request takes the queue like any other; all are
    /// delivered, and the exporter's task ends only after the lane's.
    #[tokio::test]
    async fn urgent_requests_past_the_lane_slots_take_the_queue() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let (client, consumer, handle) = lane_exporter(&ctx, Some(Arc::clone(&gate))).await;
        let mut statuses = Vec::new();
        for i in 0..=URGENT_IN_FLIGHT {
            let (urgent, status) = batch(&format!("oom{i}"));
            assert_eq!(consumer.consume(urgent.urgent()).await, Ok(()));
            statuses.push(status);
        }
        client.wait_calls_for(URGENT_IN_FLIGHT + 1, REAL_HANG).await;
        assert_eq!(client.calls_on_the_lane(), URGENT_IN_FLIGHT);
        drop(consumer);
        gate.add_permits(URGENT_IN_FLIGHT + 1);
        let joined = tokio::time::timeout(REAL_HANG, handle).await;
        assert!(
            matches!(joined, Ok(Ok(()))),
            "the exporter ends: {joined:?}"
        );
        for mut s in statuses {
            // Settled before the exporter's task ended.
            assert_eq!(s.try_recv(), Ok(DeliveryStatus::Delivered));
        }
    }

    /// Once shutdown has begun, an urgent request drains with the queue
    /// instead of starting on the lane.
    #[tokio::test]
    async fn after_shutdown_an_urgent_request_takes_the_queue() {
        let ctx = context(None);
        let (client, consumer, handle) = lane_exporter(&ctx, None).await;
        ctx.shutdown.cancel();
        let (urgent, urgent_status) = batch("oom");
        assert_eq!(consumer.consume(urgent.urgent()).await, Ok(()));
        assert_eq!(
            tokio::time::timeout(REAL_HANG, urgent_status).await,
            Ok(Ok(DeliveryStatus::Delivered))
        );
        assert_eq!(client.calls_on_the_lane(), 0);
        stop(consumer, handle).await;
    }

    /// An exporter whose task is aborted (the service's shutdown deadline)
    /// ends its urgent exports still running: their requests are reported
    /// failed.
    #[tokio::test]
    async fn aborting_the_exporter_ends_its_urgent_exports() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let (client, consumer, handle) = lane_exporter(&ctx, Some(Arc::clone(&gate))).await;
        let (urgent, urgent_status) = batch("oom");
        assert_eq!(consumer.consume(urgent.urgent()).await, Ok(()));
        client.wait_calls_for(1, REAL_HANG).await;
        handle.abort();
        let _ = handle.await;
        assert_eq!(
            tokio::time::timeout(REAL_HANG, urgent_status).await,
            Ok(Ok(DeliveryStatus::Failed))
        );
        drop(consumer);
    }

    /// One worker, `queue_size` 2: the first request is taken by the worker
    /// (in flight requests do not count, as in the collector), two wait in
    /// the queue, the next consume waits for room.
    #[tokio::test(start_paused = true)]
    async fn full_queue_blocks_until_room() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 2)), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let queued = [consume(&consumer, "2").await, consume(&consumer, "3").await];

        let (b, fourth) = batch("4");
        let mut blocked = consumer.consume(b);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), &mut blocked)
                .await
                .is_err(),
            "a consume into a full queue must wait"
        );
        gate.add_permits(100);
        let consumed = tokio::time::timeout(HANG, &mut blocked).await;
        assert!(matches!(consumed, Ok(Ok(()))), "{consumed:?}");
        drop(blocked);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        for rx in queued {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        assert_eq!(status(fourth).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
        assert_eq!(client.markers(), ["1", "2", "3", "4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_refuses_when_not_blocking() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let queue = QueueConfig {
            block_on_overflow: false,
            ..memory_queue(1, 1)
        };
        let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let second = consume(&consumer, "2").await;
        let (b, third) = batch("3");
        let refused = consumer.consume(b).await;
        assert!(
            matches!(refused, Err(ConsumeError::Refused { .. })),
            "{refused:?}"
        );
        assert_eq!(status(third).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        assert_eq!(status(second).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn drain_delivers_what_was_queued() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 10)), &client).await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        ctx.shutdown.cancel();
        drop(consumer);
        gate.add_permits(100);
        let joined = tokio::time::timeout(HANG, handle).await;
        assert!(matches!(joined, Ok(Ok(()))));
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        assert_eq!(client.markers(), ["0", "1", "2", "3", "4"]);
        assert!(client.shut_down.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_against_a_dead_backend_ends_and_reports_failure() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(memory_queue(1, 10));
        s.retry.max_elapsed_time = GoDuration::ZERO; // forever, but for shutdown
        let (consumer, handle) = start(&ctx, s, &client).await;
        let mut statuses = Vec::new();
        for i in 0..3 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        client.wait_calls(5).await;
        ctx.shutdown.cancel();
        stop(consumer, handle).await;
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
        }
        // "0" was waiting to retry: given up. "1" got one attempt during the
        // drain; it failed, so "2" was failed without one.
        let markers = client.markers();
        assert_eq!(
            markers.iter().filter(|m| *m == "1").count(),
            1,
            "{markers:?}"
        );
        assert_eq!(
            markers.iter().filter(|m| *m == "2").count(),
            0,
            "{markers:?}"
        );
    }

    /// A dead backend with a long per-attempt timeout: once an attempt has
    /// failed during the drain, the rest of the queue is failed without
    /// attempts, so the drain ends after about one timeout, not one per
    /// request.
    #[tokio::test(start_paused = true)]
    async fn drain_stops_attempting_after_the_first_failure() {
        let ctx = context(None);
        // Every attempt hangs until the 30 s per-attempt timeout.
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(gate));
        let mut s = settings(memory_queue(1, 100));
        s.timeout = Some(Duration::from_secs(30));
        s.retry.max_elapsed_time = GoDuration::ZERO;
        let (consumer, handle) = start(&ctx, s, &client).await;
        let mut statuses = Vec::new();
        for i in 0..20 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        client.wait_calls(1).await;
        let began = Instant::now();
        ctx.shutdown.cancel();
        stop(consumer, handle).await;
        let drain = began.elapsed();
        assert!(
            drain <= Duration::from_secs(31),
            "the drain took {drain:?} (paused time)"
        );
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
        }
        assert_eq!(client.calls().len(), 1, "no attempt after the failure");
    }

    #[tokio::test(start_paused = true)]
    async fn blocked_consume_is_refused_after_the_drain_wait() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 1)), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let second = consume(&consumer, "2").await;
        ctx.shutdown.cancel();
        let (b, third) = batch("3");
        let refused = tokio::time::timeout(HANG, consumer.consume(b)).await;
        assert!(
            matches!(refused, Ok(Err(ConsumeError::Refused { .. }))),
            "{refused:?}"
        );
        assert_eq!(status(third).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        stop(consumer, handle).await;
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        assert_eq!(status(second).await, DeliveryStatus::Delivered);
    }

    /// `sizer: items`: each request counts its log records (2 here); the
    /// gauge reports them with `data_type: logs`; one that does not fit
    /// waits or is refused; one larger than the whole queue is rejected at
    /// once even when blocking.
    #[tokio::test(start_paused = true)]
    async fn items_sizer_counts_records() {
        let (ctx, registry) = metered_context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let queue = QueueConfig {
            sizer: Sizer::Items,
            block_on_overflow: false,
            ..memory_queue(1, 5)
        };
        let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let queued = [consume(&consumer, "2").await, consume(&consumer, "3").await];
        let size = |t| queue_gauge(&registry, "otelcol_exporter_queue_size", t);
        assert_eq!((size("logs"), size("metrics")), (4, 0));
        assert_eq!(
            queue_gauge(&registry, "otelcol_exporter_queue_capacity", "logs"),
            5
        );
        let (b, fourth) = batch("4");
        let refused = consumer.consume(b).await;
        assert!(
            matches!(refused, Err(ConsumeError::Refused { .. })),
            "{refused:?}"
        );
        assert_eq!(status(fourth).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        for rx in queued {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        assert_eq!(size("logs"), 0);
        stop(consumer, handle).await;
        assert_eq!(client.markers(), ["1", "2", "3"]);

        let queue = QueueConfig {
            sizer: Sizer::Items,
            ..memory_queue(1, 1)
        };
        let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
        let (b, rx) = batch("too large");
        let refused = tokio::time::timeout(HANG, consumer.consume(b)).await;
        assert!(
            matches!(&refused, Ok(Err(ConsumeError::Permanent(m))) if m.contains("element size too large")),
            "{refused:?}"
        );
        assert_eq!(status(rx).await, DeliveryStatus::Rejected);
        stop(consumer, handle).await;
    }

    /// `sizer: bytes`: room for exactly two serialized requests.
    #[tokio::test(start_paused = true)]
    async fn bytes_sizer_counts_serialized_size() {
        let (ctx, registry) = metered_context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let one = log_request_bytes();
        let queue = QueueConfig {
            sizer: Sizer::Bytes,
            block_on_overflow: false,
            ..memory_queue(1, 2 * one + 1)
        };
        let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let queued = [consume(&consumer, "2").await, consume(&consumer, "3").await];
        assert_eq!(
            queue_gauge(&registry, "otelcol_exporter_queue_size", "logs"),
            i64::try_from(2 * one).unwrap_or(i64::MAX)
        );
        let (b, fourth) = batch("4");
        assert!(matches!(
            consumer.consume(b).await,
            Err(ConsumeError::Refused { .. })
        ));
        assert_eq!(status(fourth).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        for rx in queued {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        stop(consumer, handle).await;
    }
}
