//! The server authenticator in front of a tonic service: a call without
//! valid credentials gets UNAUTHENTICATED before its message is read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use super::ServerAuth;

/// `inner`, with its calls checked by `auth` (none: passed through).
#[derive(Clone)]
pub struct GrpcServerAuth<S> {
    inner: S,
    auth: Option<ServerAuth>,
}

impl<S> GrpcServerAuth<S> {
    pub fn new(inner: S, auth: Option<ServerAuth>) -> Self {
        GrpcServerAuth { inner, auth }
    }
}

impl<S: NamedService> NamedService for GrpcServerAuth<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for GrpcServerAuth<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(auth) = self.auth.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // The service polled ready is the one to call; a clone stays behind.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (parts, body) = request.into_parts();
        Box::pin(async move {
            match auth.check(&parts.headers).await {
                Ok(()) => inner.call(http::Request::from_parts(parts, body)).await,
                Err(refused) => Ok(Status::unauthenticated(format!(
                    "unauthenticated: {}",
                    refused.as_str()
                ))
                .into_http()),
            }
        })
    }
}
