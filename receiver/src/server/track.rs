//! Marks each tonic call in flight on its connection, so that the idle
//! timeout of [`LimitedConn`](super::conn::LimitedConn) tells connections with no
//! call (only HTTP/2 pings) apart from busy ones.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::conn::{ConnInfo, RequestGuard};

/// A tower layer for `tonic::transport::Server::layer`. A call counts as in
/// flight until its response head is produced; a streaming response that
/// must keep its connection open holds its own guard from the request's
/// [`ConnInfo`] (see the events API).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrackRequestsLayer;

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackRequests(inner)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TrackRequests<S>(S);

impl<S, B> tower::Service<http::Request<B>> for TrackRequests<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = request
            .extensions()
            .get::<ConnInfo>()
            .map(|info| info.activity.request());
        Tracked {
            inner: Box::pin(self.0.call(request)),
            _guard: guard,
        }
    }
}

/// A response future holding its request's in-flight mark.
pub(crate) struct Tracked<F> {
    inner: Pin<Box<F>>,
    _guard: Option<RequestGuard>,
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}
