//! The interface every processor and exporter offers to what comes before it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::data::Batch;

/// Why data was not taken. Receivers map this to their protocol's status
/// (OTLP: `Refused` is retryable, 429/503 with Retry-After; `Permanent` is not).
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
pub struct Fanout {
    outputs: Vec<DynConsumer>,
}

impl Fanout {
    /// One consumer is returned as it is; several are wrapped in a fan-out.
    pub fn build(mut outputs: Vec<DynConsumer>) -> DynConsumer {
        if outputs.len() == 1 {
            if let Some(only) = outputs.pop() {
                return only;
            }
        }
        Arc::new(Fanout { outputs })
    }
}

#[async_trait]
impl Consumer for Fanout {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        // Every branch is attempted; the first error is reported. A branch
        // that refused leaves its acknowledgement share unsettled, so a
        // receiver that waits for acknowledgement sees the batch as failed.
        let mut first_error = None;
        let n = self.outputs.len();
        let mut batch = Some(batch);
        for (i, out) in self.outputs.iter().enumerate() {
            let b = if i + 1 == n {
                match batch.take() {
                    Some(b) => b,
                    None => break,
                }
            } else {
                match batch.as_ref() {
                    Some(b) => b.fork(),
                    None => break,
                }
            };
            if let Err(e) = out.consume(b).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
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
