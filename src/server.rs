//! The collector's HTTP/1.1 server: `axum::serve`, plus the deadline a
//! public endpoint needs and axum's server leaves out.
//!
//! The collector faces the internet. `axum::serve` sets no timer on its
//! connections, so a client that sends its request headers a byte at a time —
//! or opens connections and sends nothing — holds them for ever, and enough
//! of them exhaust the pod's file descriptors (the "slowloris" attack). Here
//! every connection gets hyper's header-read timeout: the headers of each
//! request, the first and every keep-alive one, must arrive within it, or
//! the connection is closed. The body and the handling are bounded by the
//! handler's own `COLLECT_REQUEST_TIMEOUT`.
//!
//! Everything else is what `axum::serve` does: the peer address as
//! `ConnectInfo`, and a graceful stop (no new connections, open ones finish
//! their request and close).

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};

/// Serves `app` on `listener` until `stop` resolves, then waits for the
/// open connections to finish their current request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
        });
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
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
        let task =
            tokio::spawn(async move { serve(listener, app, header_timeout, async move { stop.wait().await }).await });
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
