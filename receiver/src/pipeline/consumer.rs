//! The interface every processor and exporter offers to what comes before it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ack::{BatchNotifier, BatchStatusReceiver, Finalizers};
use super::data::{Batch, Payload};

/// Why data was not taken. Receivers map this to their protocol's status
/// (OTLP: `Refused` is retryable, HTTP 503 with Retry-After or gRPC
/// UNAVAILABLE with RetryInfo; `Permanent` is not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// Temporarily refused (memory limit, full queue): try again later.
    #[error("data refused: {reason}")]
    Refused {
        reason: String,
        /// A hint for when to retry.
        retry_after: Option<Duration>,
    },
    /// Refused for good (malformed, too large): do not retry.
    #[error("data rejected: {0}")]
    Permanent(String),
    /// The pipeline is shutting down.
    #[error("pipeline is shutting down")]
    Shutdown,
}

impl ConsumeError {
    pub fn refused(reason: impl Into<String>) -> Self {
        ConsumeError::Refused {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        !matches!(self, ConsumeError::Permanent(_))
    }
}

/// Something that takes batches: a processor, an exporter's queue, a fan-out.
///
/// `consume` returns once the data has been taken into the next bounded buffer
/// (or waits while that buffer is full: this is how back-pressure travels to
/// the receiver). Delivery itself is reported through the batch's finalizers.
#[async_trait]
pub trait Consumer: Send + Sync {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;
}

pub type DynConsumer = Arc<dyn Consumer>;

/// Sends each batch to several consumers: a receiver in several pipelines, or
/// a pipeline with several exporters. The payload is shared, not copied; each
/// branch gets its own acknowledgement share.
///
/// Branches are offered the batch concurrently, so a branch that blocks
/// (a full queue pushing back) does not delay the others. When any branch
/// refuses, `consume` reports the error and that branch's acknowledgement
/// share is left unsettled, so the batch resolves `Failed` even though the
/// other branches took it: a sender that retries re-delivers to every branch
/// (duplicates on retry are within OTLP's at-least-once contract).
pub struct Fanout {
    outputs: Vec<DynConsumer>,
}

/// A fan-out must have somewhere to send data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fan-out needs at least one consumer")]
pub struct EmptyFanout;

impl Fanout {
    /// One consumer is returned as it is; several are wrapped in a fan-out;
    /// none is an error (data sent there would be silently dropped).
    pub fn build(mut outputs: Vec<DynConsumer>) -> Result<DynConsumer, EmptyFanout> {
        match outputs.len() {
            0 => Err(EmptyFanout),
            1 => outputs.pop().ok_or(EmptyFanout),
            _ => Ok(Arc::new(Fanout { outputs })),
        }
    }
}

/// How many branches of a fan-out refused a batch, and the first reason.
fn fanout_error(errors: Vec<ConsumeError>, branches: usize) -> Option<ConsumeError> {
    let refused = errors.len();
    let first = errors.into_iter().next()?;
    if branches <= 1 {
        return Some(first);
    }
    // Keep the kind (and retry hint) of the first error; say how many refused.
    Some(match first {
        ConsumeError::Refused {
            reason,
            retry_after,
        } => ConsumeError::Refused {
            reason: format!("{refused} of {branches} branches refused the data: {reason}"),
            retry_after,
        },
        ConsumeError::Permanent(reason) => ConsumeError::Permanent(format!(
            "{refused} of {branches} branches rejected the data: {reason}"
        )),
        ConsumeError::Shutdown => ConsumeError::Shutdown,
    })
}

#[async_trait]
impl Consumer for Fanout {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let n = self.outputs.len();
        let mut batches: Vec<Batch> = (1..n).map(|_| batch.fork()).collect();
        batches.push(batch);
        let results = futures::future::join_all(
            self.outputs
                .iter()
                .zip(batches)
                .map(|(out, b)| out.consume(b)),
        )
        .await;
        let errors: Vec<ConsumeError> = results.into_iter().filter_map(Result::err).collect();
        match fanout_error(errors, n) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// How long a receiver waits before offering refused data again when the
/// pipeline gave no hint, and the longest it waits whatever the hint.
const REFUSED_RETRY_DEFAULT: Duration = Duration::from_millis(200);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(5);

/// Hands `payload` to `to` the way the kernel and file receivers do: while
/// the pipeline refuses it (push-back: memory limiter, full queue), waits and
/// offers it again, until `shutdown`. With `acknowledge`, the batch carries a
/// finalizer and its delivery status is returned. A permanent refusal, a
/// pipeline shutting down, or `shutdown` while waiting ends with the error.
pub async fn consume_retrying(
    to: &dyn Consumer,
    payload: &Arc<Payload>,
    urgent: bool,
    acknowledge: bool,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<BatchStatusReceiver>, ConsumeError> {
    loop {
        let (finalizers, status) = if acknowledge {
            let (finalizer, status) = BatchNotifier::new_pair();
            (Finalizers::new(finalizer), Some(status))
        } else {
            (Finalizers::default(), None)
        };
        let batch = Batch {
            payload: Arc::clone(payload),
            finalizers,
            urgent,
        };
        match to.consume(batch).await {
            Ok(()) => return Ok(status),
            Err(ConsumeError::Refused {
                reason,
                retry_after,
            }) => {
                tracing::debug!(%reason, "the pipeline refused data; offering it again");
                let wait = retry_after
                    .unwrap_or(REFUSED_RETRY_DEFAULT)
                    .min(REFUSED_RETRY_MAX);
                tokio::select! {
                    () = shutdown.cancelled() => {
                        return Err(ConsumeError::Refused { reason, retry_after });
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! A consumer that records what it gets, for unit tests of components.
    use super::*;
    use crate::pipeline::ack::DeliveryStatus;
    use tokio::sync::mpsc;

    pub struct Collect {
        tx: mpsc::UnboundedSender<Batch>,
        pub settle: Option<DeliveryStatus>,
    }

    impl Collect {
        pub fn new(settle: Option<DeliveryStatus>) -> (Arc<Self>, mpsc::UnboundedReceiver<Batch>) {
            let (tx, rx) = mpsc::unbounded_channel();
            (Arc::new(Collect { tx, settle }), rx)
        }
    }

    #[async_trait]
    impl Consumer for Collect {
        async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
            if let Some(s) = self.settle {
                std::mem::take(&mut batch.finalizers).settle(s);
            }
            self.tx.send(batch).map_err(|_| ConsumeError::Shutdown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Collect;
    use super::*;
    use crate::pipeline::ack::{BatchNotifier, DeliveryStatus, Finalizers};
    use crate::pipeline::data::Payload;
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

    /// Takes nothing until `release` is notified; then refuses.
    struct Blocked {
        release: Arc<tokio::sync::Notify>,
    }

    #[async_trait]
    impl Consumer for Blocked {
        async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
            self.release.notified().await;
            Err(ConsumeError::refused("queue is full"))
        }
    }

    #[test]
    fn an_empty_fanout_is_an_error() {
        assert!(matches!(Fanout::build(Vec::new()), Err(EmptyFanout)));
        let (one, _rx) = Collect::new(None);
        assert!(Fanout::build(vec![one]).is_ok());
    }

    /// A blocked branch does not hold back the other one, and its refusal
    /// fails the batch's acknowledgement and is reported with a branch count.
    #[tokio::test]
    async fn a_blocked_branch_does_not_delay_the_others() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (fast, mut rx) = Collect::new(Some(DeliveryStatus::Delivered));
        let blocked: DynConsumer = Arc::new(Blocked {
            release: Arc::clone(&release),
        });
        let fanout = match Fanout::build(vec![blocked, fast]) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let (finalizer, status) = BatchNotifier::new_pair();
        let batch = Batch::new(logs(3)).with_finalizers(Finalizers::new(finalizer));
        let consume = tokio::spawn(async move { fanout.consume(batch).await });
        // The fast branch gets the batch while the first branch is blocked
        // (sequential branches would wait for the blocked one first).
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
            .await
            .expect("the fast branch is not held back")
            .expect("a batch");
        assert_eq!(got.item_count(), 3);
        release.notify_one();
        let result = consume.await.expect("task");
        assert!(
            matches!(&result, Err(ConsumeError::Refused { reason, .. }) if reason.starts_with("1 of 2 branches refused")),
            "{result:?}"
        );
        assert_eq!(status.await.ok(), Some(DeliveryStatus::Failed));
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::pipeline::DeliveryStatus;

    /// Refuses the first `refusals` batches, then settles the rest Delivered.
    struct RefuseFirst {
        refusals: usize,
        seen: AtomicUsize,
    }

    #[async_trait]
    impl Consumer for RefuseFirst {
        async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
            if self.seen.fetch_add(1, Ordering::SeqCst) < self.refusals {
                return Err(ConsumeError::Refused {
                    reason: "full".into(),
                    retry_after: Some(Duration::from_millis(50)),
                });
            }
            std::mem::take(&mut batch.finalizers).settle(DeliveryStatus::Delivered);
            Ok(())
        }
    }

    fn payload() -> Arc<Payload> {
        Arc::new(Payload::Logs(Vec::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn offers_refused_data_again_and_returns_the_acknowledgement() {
        let to = RefuseFirst {
            refusals: 2,
            seen: AtomicUsize::new(0),
        };
        let status = consume_retrying(&to, &payload(), false, true, &CancellationToken::new())
            .await
            .expect("taken on the third offer")
            .expect("a status when acknowledging");
        assert_eq!(to.seen.load(Ordering::SeqCst), 3);
        assert_eq!(status.await.ok(), Some(DeliveryStatus::Delivered));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_with_the_refusal() {
        let to = RefuseFirst {
            refusals: usize::MAX,
            seen: AtomicUsize::new(0),
        };
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let got = consume_retrying(&to, &payload(), true, false, &shutdown).await;
        assert!(matches!(got, Err(ConsumeError::Refused { .. })), "{got:?}");
        assert_eq!(to.seen.load(Ordering::SeqCst), 1);
    }
}
