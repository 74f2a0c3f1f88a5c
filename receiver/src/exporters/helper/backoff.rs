//! How long a failed request waits before it is tried again: between
//! attempts (exponential backoff with jitter), and before a persistent queue
//! item whose retries ran out is taken again.

use std::time::Duration;

use super::RetryConfig;

/// Shortest pause before a persistent queue item whose retries ran out is
/// tried again.
const MIN_REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Exponential backoff with jitter, like the collector's (cenkalti/backoff):
/// the n-th wait is `initial * multiplier^n` capped at `max_interval`, then
/// spread uniformly over ±`randomization_factor`.
pub(super) struct Backoff {
    current: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    pub(super) fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            current: cfg.initial_interval.get(),
            max: cfg.max_interval.get(),
            multiplier: cfg.multiplier,
            randomization: cfg.randomization_factor,
        }
    }

    pub(super) fn next_wait(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let delta = self.randomization * base;
        let wait = base - delta + rand::random::<f64>() * 2.0 * delta;
        self.current = Duration::try_from_secs_f64(base * self.multiplier)
            .unwrap_or(self.max)
            .min(self.max);
        Duration::try_from_secs_f64(wait).unwrap_or(self.max)
    }
}

/// How long a persistent queue item whose retries ran out waits before it is
/// tried again: the longest backoff wait (at least [`MIN_REQUEUE_PAUSE`], so
/// that a disabled or tiny retry configuration does not spin).
pub(super) fn requeue_pause(retry: &RetryConfig) -> Duration {
    retry.max_interval.get().max(MIN_REQUEUE_PAUSE)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::config::GoDuration;
    use crate::exporters::helper::tests::{
        consume, context, settings, start, status, stop, ScriptedClient,
    };
    use crate::exporters::helper::{ExportError, QueueConfig, RetryConfig};
    use crate::pipeline::DeliveryStatus;

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_and_is_capped() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(QueueConfig::default());
        s.retry = RetryConfig {
            initial_interval: GoDuration::from_secs(1),
            max_interval: GoDuration::from_secs(4),
            max_elapsed_time: GoDuration::from_secs(30),
            multiplier: 2.0,
            randomization_factor: 0.5,
            enabled: true,
        };
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Failed);
        let times: Vec<Instant> = client.calls().iter().map(|(t, _)| *t).collect();
        let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
        // Base waits 1, 2, 4, 4, ... s, each within ±50 %.
        let bases = [1.0, 2.0, 4.0];
        for (i, gap) in gaps.iter().enumerate() {
            let base = bases.get(i).copied().unwrap_or(4.0);
            let g = gap.as_secs_f64();
            assert!(
                g >= base * 0.5 - 1e-6 && g <= base * 1.5 + 1e-6,
                "wait {i} was {g}s, base {base}s"
            );
        }
        assert!(times[times.len() - 1] - times[0] <= Duration::from_secs(30));
        stop(consumer, handle).await;
    }
}
