//! The HTTP/1.1 server of every listener (the collector's `/v1` routes and
//! every pod's `/metrics`, `/healthz`, `/readyz`, `/report`): `axum::serve`,
//! plus the bounds a port reachable by strangers needs and axum's server
//! leaves out.
//!
//! `axum::serve` sets no timer and no cap on its connections, and hyper
//! buffers up to ~400 KB of headers per connection: a client that sends its
//! headers a byte at a time — or opens connections and sends nothing, or
//! sends huge headers it never finishes — holds memory and file descriptors
//! for ever (the "slowloris" attack). Here:
//! - the headers of each request, the first and every keep-alive one, must
//!   arrive within `header_timeout`, or the connection is closed (the body
//!   and the handling are bounded by the handler's own deadline);
//! - at most [`Limits::max_header_bytes`] of headers are buffered per
//!   connection (a request with more gets 431);
//! - at most [`Limits::max_connections`] connections are open at once;
//!   further ones are closed as soon as they are accepted.
//!
//! Everything else is what `axum::serve` does: the peer address as
//! `ConnectInfo`, and a graceful stop (no new connections, open ones finish
//! their request and close).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};

/// Headers buffered per connection: browsers send a few KB (cookies
/// included); nginx's default ceiling is 4 × 8 KB.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time for a request's headers to arrive.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Header bytes buffered per connection.
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `stop` resolves, then waits for the
/// open connections to finish their current request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
        });
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    return;
                }
                _ = close.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(close_rx);
    let _ = close_tx.send(());
    // Every connection task holds a receiver until it ends.
    close_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    struct Server {
        addr: SocketAddr,
        shutdown: crate::shutdown::Shutdown,
        task: tokio::task::JoinHandle<()>,
        /// `/held` tells when it has started and answers when released.
        started: Arc<Notify>,
        release: Arc<Notify>,
    }

    async fn start(header_timeout: Duration) -> Server {
        start_with(Limits {
            header_timeout,
            max_connections: 64,
            max_header_bytes: MAX_HEADER_BYTES,
        })
        .await
    }

    async fn start_with(limits: Limits) -> Server {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (started.clone(), release.clone());
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(
                    |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                        peer.ip().to_string()
                    },
                ),
            )
            .route(
                "/held",
                axum::routing::get(move || async move {
                    s.notify_one();
                    r.notified().await;
                    "released"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = crate::shutdown::Shutdown::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { serve(listener, app, limits, async move { stop.wait().await }).await });
        Server {
            addr,
            shutdown,
            task,
            started,
            release,
        }
    }

    async fn read_until_closed(s: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn answers_with_the_peer_address() {
        let server = start(Duration::from_secs(5)).await;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
        server.shutdown.trigger();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn clients_that_do_not_finish_their_headers_are_disconnected() {
        let server = start(Duration::from_millis(300)).await;
        // Without the timeout these reads would wait for ever; 10 s bounds
        // the test.
        let bound = Duration::from_secs(10);
        let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = tokio::time::timeout(bound, read_until_closed(&mut slow))
            .await
            .expect("a client stuck in its headers is disconnected");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tokio::time::timeout(bound, read_until_closed(&mut silent))
            .await
            .expect("a connection that never sends a byte is disconnected");
        // And an idle keep-alive connection, after its first request.
        let mut kept = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = tokio::time::timeout(bound, read_until_closed(&mut kept))
            .await
            .expect("an idle keep-alive connection is disconnected");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.shutdown.trigger();
        server.task.await.unwrap();
    }

    /// Headers beyond the per-connection buffer are refused, not buffered.
    #[tokio::test]
    async fn oversized_headers_are_refused() {
        let server = start(Duration::from_secs(5)).await;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let big = "a".repeat(MAX_HEADER_BYTES * 2);
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {big}\r\n\r\n");
        let _ = s.write_all(request.as_bytes()).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut s))
            .await
            .expect("the connection is answered and closed");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
        // A request with ordinary headers is served.
        let mut ok = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_until_closed(&mut ok).await.starts_with("HTTP/1.1 200"));
        server.shutdown.trigger();
        server.task.await.unwrap();
    }

    /// Beyond the connection cap, new connections are closed at once; a
    /// closed one frees its place.
    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed() {
        let server = start_with(Limits {
            header_timeout: Duration::from_secs(30),
            max_connections: 2,
            max_header_bytes: MAX_HEADER_BYTES,
        })
        .await;
        let held_a = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let held_b = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Both accepted (the server answers once it has them): a third is
        // closed without an answer, well before the header timeout.
        let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let answer = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut third))
            .await
            .expect("the third connection is closed at once");
        assert!(answer.is_empty(), "{answer}");
        drop(held_a);
        let answered = async {
            loop {
                let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                let _ = s
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                if read_until_closed(&mut s).await.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), answered)
            .await
            .expect("a freed place is taken by the next connection");
        drop(held_b);
        server.shutdown.trigger();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn stopping_lets_a_request_in_progress_finish() {
        let server = start(Duration::from_secs(5)).await;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        server.started.notified().await;
        server.shutdown.trigger();
        server.release.notify_one();
        let answer = read_until_closed(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("released"),
            "{answer}"
        );
        server.task.await.unwrap();
    }
}
