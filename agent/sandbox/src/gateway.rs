//! What answers on a sandbox's one socket (`127.0.0.1:<port>` inside its network namespace,
//! served by Valor from outside): the egress proxy for proxy requests (`CONNECT`, absolute
//! URLs), the routes Valor gives the sandbox (the model API proxy, the MCP servers) for the
//! rest. It ends when dropped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use crate::egress::{EgressPolicy, is_proxy_request};

/// Connections one sandbox may hold open at once.
const MAX_CONNECTIONS: usize = 64;
/// A request's head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a sandbox's socket answers.
#[derive(Clone)]
pub struct Gateway {
    pub egress: Arc<EgressPolicy>,
    /// Valor's routes for this sandbox; `None` answers 404 to everything but the proxy.
    pub routes: Option<axum::Router>,
    /// The chat whose sandbox this is: every routed request carries it as a [`Tenant`].
    pub tenant: Option<i64>,
}

/// The chat a request came from, set by the gateway of that chat's sandbox (a route that binds
/// a chat by token checks that the two agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant(pub i64);

/// The serving task of one sandbox's socket; aborted when dropped.
#[derive(Debug)]
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `listener` (the socket the sandbox's init handed over) until dropped.
pub fn serve(listener: TcpListener, gateway: Gateway) -> std::io::Result<Serving> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let gateway = Arc::new(gateway);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(Serving(tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                // Answers stream in small writes (server-sent events): no Nagle delay on them.
                Ok((stream, _)) => match stream.set_nodelay(true) {
                    Ok(()) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a sandbox connection");
                        stream
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "a sandbox's socket failed to accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let gateway = Arc::clone(&gateway);
                    async move { Ok::<_, std::convert::Infallible>(gateway.answer(request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "a sandbox connection ended with an error");
                }
                drop(permit);
            });
        }
    })))
}

impl Gateway {
    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Body> {
        use tower::ServiceExt as _;
        let mut request = request.map(Body::new);
        if let Some(chat) = self.tenant {
            request.extensions_mut().insert(Tenant(chat));
        }
        if is_proxy_request(&request) {
            return if request.method() == axum::http::Method::CONNECT {
                self.egress.tunnel(request).await
            } else {
                self.egress.forward(request).await
            };
        }
        match &self.routes {
            Some(routes) => match routes.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            None => {
                let mut response = Response::new(Body::from("nothing here\n"));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        }
    }
}
