//! End-to-end acknowledgements: how a receiver learns that its data was
//! delivered (exported, or written to a persistent queue).
//!
//! A receiver that needs to know (file offsets, kmsg sequence numbers) creates
//! a [`BatchNotifier`] and attaches its [`Finalizer`] to the batch. Every
//! component that forks the batch (fan-out, batch splitting) clones the
//! finalizer; every clone must be *settled* by whoever ends its journey. The
//! notifier resolves once every share is gone, with the worst status reported.
//! A share dropped without being settled counts as [`DeliveryStatus::Failed`],
//! so data lost on any path is never acknowledged as delivered.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Outcome of one batch, worst wins.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum DeliveryStatus {
    /// Exported, or durably queued.
    Delivered = 0,
    /// Refused permanently downstream (for example HTTP 400): retrying the
    /// same data would not help.
    Rejected = 1,
    /// Not delivered (retries exhausted, dropped at shutdown, refused by a
    /// full pipeline): the source should offer it again.
    Failed = 2,
}

impl DeliveryStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => DeliveryStatus::Delivered,
            1 => DeliveryStatus::Rejected,
            _ => DeliveryStatus::Failed,
        }
    }
}

/// Resolves the receiver's [`BatchStatusReceiver`] when the last share is dropped.
#[derive(Debug)]
pub struct BatchNotifier {
    status: AtomicU8,
    tx: Mutex<Option<oneshot::Sender<DeliveryStatus>>>,
}

/// Awaited by the receiver; yields the batch's final status.
pub type BatchStatusReceiver = oneshot::Receiver<DeliveryStatus>;

impl BatchNotifier {
    /// A new notifier with its first finalizer share, and the receiving end.
    pub fn new_pair() -> (Finalizer, BatchStatusReceiver) {
        let (tx, rx) = oneshot::channel();
        let notifier = Arc::new(BatchNotifier {
            status: AtomicU8::new(DeliveryStatus::Delivered as u8),
            tx: Mutex::new(Some(tx)),
        });
        (
            Finalizer {
                notifier,
                settled: false,
            },
            rx,
        )
    }

    fn update(&self, status: DeliveryStatus) {
        self.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

impl Drop for BatchNotifier {
    fn drop(&mut self) {
        let status = DeliveryStatus::from_u8(self.status.load(Ordering::Acquire));
        let tx = match self.tx.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(tx) = tx {
            // The receiver may have stopped waiting; nothing to do then.
            let _ = tx.send(status);
        }
    }
}

/// One share of a batch's acknowledgement.
#[derive(Debug)]
pub struct Finalizer {
    notifier: Arc<BatchNotifier>,
    settled: bool,
}

impl Clone for Finalizer {
    /// A new, unsettled share of the same notifier.
    fn clone(&self) -> Self {
        Finalizer {
            notifier: Arc::clone(&self.notifier),
            settled: false,
        }
    }
}

impl Finalizer {
    pub fn settle(mut self, status: DeliveryStatus) {
        self.notifier.update(status);
        self.settled = true;
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        if !self.settled {
            self.notifier.update(DeliveryStatus::Failed);
        }
    }
}

/// The finalizers of every receiver batch merged into one pipeline batch.
#[derive(Debug, Default, Clone)]
pub struct Finalizers(Vec<Finalizer>);

impl Finalizers {
    pub fn new(finalizer: Finalizer) -> Self {
        Finalizers(vec![finalizer])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Takes over `other`'s shares (batch merging).
    pub fn merge(&mut self, mut other: Finalizers) {
        self.0.append(&mut other.0);
    }

    /// Settles every share.
    pub fn settle(self, status: DeliveryStatus) {
        for f in self.0 {
            f.settle(status);
        }
    }

    /// Shares for `n` pieces of one batch (batch splitting); the original
    /// shares are retired without affecting the status. Splitting into no
    /// pieces means nothing will be sent, so the batch is settled `Failed`.
    pub fn split(self, n: usize) -> Vec<Finalizers> {
        if n == 0 {
            self.settle(DeliveryStatus::Failed);
            return Vec::new();
        }
        let parts = (0..n).map(|_| self.clone()).collect();
        self.settle(DeliveryStatus::Delivered);
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivered_when_every_share_settles_delivered() {
        let (f, rx) = BatchNotifier::new_pair();
        let a = Finalizers::new(f);
        let b = a.clone();
        a.settle(DeliveryStatus::Delivered);
        b.settle(DeliveryStatus::Delivered);
        assert_eq!(rx.await.ok(), Some(DeliveryStatus::Delivered));
    }

    #[tokio::test]
    async fn an_unsettled_share_fails_the_batch() {
        let (f, rx) = BatchNotifier::new_pair();
        let a = Finalizers::new(f);
        let lost = a.clone();
        a.settle(DeliveryStatus::Delivered);
        drop(lost);
        assert_eq!(rx.await.ok(), Some(DeliveryStatus::Failed));
    }

    #[tokio::test]
    async fn worst_status_wins_and_split_keeps_pending() {
        let (f, mut rx) = BatchNotifier::new_pair();
        let Ok([first, second, third]) = <[Finalizers; 3]>::try_from(Finalizers::new(f).split(3))
        else {
            panic!("split(3) must give three shares");
        };
        first.settle(DeliveryStatus::Delivered);
        second.settle(DeliveryStatus::Rejected);
        assert!(rx.try_recv().is_err(), "must wait for the last share");
        third.settle(DeliveryStatus::Delivered);
        assert_eq!(rx.await.ok(), Some(DeliveryStatus::Rejected));
    }

    #[tokio::test]
    async fn splitting_into_nothing_fails_the_batch() {
        let (f, rx) = BatchNotifier::new_pair();
        assert!(Finalizers::new(f).split(0).is_empty());
        assert_eq!(rx.await.ok(), Some(DeliveryStatus::Failed));
    }
}
