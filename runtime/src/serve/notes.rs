//! What the path tells the client beside the answer, in one response header on every
//! protocol: which fallback hop served the request ([`FALLBACK_HEADER`]). The path notes
//! it; one layer ([`NotesLayer`]) over the REST router and the gRPC server writes it into
//! the response head (gRPC: its initial metadata). The edges take no part.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response};

/// The response header naming the fallback hop that served a request (`model:<name>`,
/// `grpc:<model>`, `response`); absent when the routed version served it.
pub const FALLBACK_HEADER: &str = "modelplane-fallback";

tokio::task_local! {
    /// The fallback hop noted for the request the current task serves.
    static FALLBACK: RefCell<Option<String>>;
}

/// Notes that a fallback hop (its label) serves the current request, in place of any
/// hop noted before; outside a request (a test calling the path directly) it goes
/// nowhere.
pub fn fallback(hop: &str) {
    let _ = FALLBACK.try_with(|noted| *noted.borrow_mut() = Some(hop.to_owned()));
}

/// Writes the path's notes into each response's head.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotesLayer;

impl<S> tower::Layer<S> for NotesLayer {
    type Service = NotesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NotesService { inner }
    }
}

/// The service [`NotesLayer`] makes.
#[derive(Clone, Debug)]
pub struct NotesService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<Request<B>> for NotesService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answered = self.inner.call(request);
        Box::pin(FALLBACK.scope(RefCell::new(None), async move {
            let mut response = answered.await?;
            let hop = FALLBACK.with(RefCell::take);
            if let Some(value) = hop.and_then(|hop| HeaderValue::from_str(&hop).ok()) {
                response.headers_mut().insert(FALLBACK_HEADER, value);
            }
            Ok(response)
        }))
    }
}
