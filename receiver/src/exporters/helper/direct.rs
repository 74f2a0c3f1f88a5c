//! The queue disabled: `consume` itself exports, with retries, and returns
//! the outcome, so the pipeline sees each failure.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::DropGuard;

use super::{Core, EncodedRequest, Outcome, QueuedData};
use crate::pipeline::{Batch, ConsumeError, Consumer, DeliveryStatus};

/// Queue disabled: export inside `consume`.
pub(super) struct DirectConsumer {
    pub(super) core: Arc<Core>,
    /// Tells the task that the consumer is gone.
    pub(super) _dropped: DropGuard,
}

#[async_trait]
impl Consumer for DirectConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if batch.item_count() == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        let started = Instant::now();
        let counted = (batch.signal(), batch.item_count());
        // An urgent batch is encoded here, as the queue would: the client
        // learns from the encoding that it goes apart from bulk traffic.
        let data = if batch.urgent && self.core.client.sends_protobuf() {
            QueuedData::Encoded(EncodedRequest::encode(&batch.payload).marked_urgent(true))
        } else {
            QueuedData::Payload(batch.payload)
        };
        let outcome = self
            .core
            .export_with_retry(&data, &self.core.shutdown)
            .await
            .stopped_gives_up();
        let result = match &outcome {
            Outcome::Sent(_) => Ok(()),
            Outcome::Rejected(e) => Err(ConsumeError::Permanent(e.message.clone())),
            Outcome::GaveUp { error, .. } | Outcome::Stopped(error) => Err(ConsumeError::Refused {
                reason: error.message.clone(),
                retry_after: error.retry_after,
            }),
        };
        self.core
            .finish(counted, batch.finalizers, &outcome, started);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::exporters::helper::tests::{
        batch, context, settings, start, status, stop, ScriptedClient, Step,
    };
    use crate::exporters::helper::{ExportError, ExportResponse, QueueConfig};
    use crate::pipeline::{ConsumeError, DeliveryStatus};

    #[tokio::test(start_paused = true)]
    async fn queue_disabled_exports_inside_consume() {
        let ctx = context(None);
        let script = vec![
            Step::Reply(Err(ExportError::retryable("blip"))),
            Step::Reply(Ok(ExportResponse::default())),
            Step::Reply(Err(ExportError::permanent("bad request"))),
        ];
        let client = ScriptedClient::new(script, None, None);
        let queue = QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        };
        let (consumer, handle) = start(&ctx, settings(queue), &client).await;
        let (b, ok) = batch("a");
        assert_eq!(consumer.consume(b).await, Ok(()));
        assert_eq!(client.calls().len(), 2, "exported before consume returned");
        assert_eq!(status(ok).await, DeliveryStatus::Delivered);
        let (b, rejected) = batch("b");
        assert!(matches!(
            consumer.consume(b).await,
            Err(ConsumeError::Permanent(_))
        ));
        assert_eq!(status(rejected).await, DeliveryStatus::Rejected);
        stop(consumer, handle).await;
        assert!(client.shut_down.load(Ordering::SeqCst));
    }

    /// Without a queue too, a client that sends protobuf gets an urgent
    /// batch encoded and marked so; an ordinary one as the payload.
    #[tokio::test(start_paused = true)]
    async fn queue_disabled_marks_urgent_requests() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), None, None);
        client.protobuf.store(true, Ordering::SeqCst);
        let queue = QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        };
        let (consumer, handle) = start(&ctx, settings(queue), &client).await;
        let (b, _) = batch("bulk");
        assert_eq!(consumer.consume(b).await, Ok(()));
        let (b, ok) = batch("oom");
        assert_eq!(consumer.consume(b.urgent()).await, Ok(()));
        assert_eq!(status(ok).await, DeliveryStatus::Delivered);
        assert_eq!(client.markers(), ["bulk", "oom"]);
        assert_eq!(client.encoded_urgent(), [true], "only the urgent one");
        stop(consumer, handle).await;
    }
}
