//! Plumbing shared by the agent's servers (the OTLP receiver, the own-metrics
//! endpoint, `health_check`, `status`, the OOM events API): accepting connections with
//! a cap on how many are open at once (beyond it, new ones are closed at
//! once rather than left in the listen backlog), backoff on accept errors,
//! TCP keepalive so connections to vanished peers do not pile up, and
//! timeouts so that connections that send nothing, or sit idle, give their
//! slot back. TCP and Unix sockets are served alike.
//!
//! - `listener`: [`Acceptor`], [`ConnectionLimits`], the accept sources
//!   (TCP and Unix listeners).
//! - `conn`: [`LimitedConn`](conn::LimitedConn), one accepted connection and
//!   its timeouts, and [`ConnActivity`](conn::ConnActivity), which tells the
//!   idle timeout whether a request is in flight.
//! - `track`: [`TrackRequestsLayer`], marking tonic calls in flight.

mod conn;
mod listener;
mod track;

pub(crate) use conn::{AcceptedSocket, ConnInfo, LimitedConn, RequestGuard};
pub(crate) use listener::{AcceptSource, Acceptor, ConnectionLimits};
pub(crate) use track::TrackRequestsLayer;
