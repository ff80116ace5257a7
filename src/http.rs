//! The HTTP endpoints of every long-running command, on `HTTP_ADDR`:
//!
//! | path | answers |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 while every consumer loop in the process is alive (iterated in the last 30 s) |
//! | `GET /readyz` | 200 once every consumer has joined its group, its loop is alive, and it is not stopping |
//! | `GET /report` | the analytics report as JSON (or the only consumer's report) |
//! | `GET /report/{consumer}` | the report of `analytics` or `fraud` |
//!
//! Everything is read-only: no endpoint changes state, so exposing the port
//! to a scraper or a load balancer's health check is safe. Other methods get
//! 405.
//!
//! [`client`] is the other side: the small HTTP client that the fleet, the
//! probe and the integration tests read endpoints like these with.

pub mod client;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::runtime::ConsumerShared;
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub telemetry: Arc<Telemetry>,
    /// (consumer name, shared state) of each consumer in this process.
    pub consumers: Vec<(&'static str, Arc<ConsumerShared>)>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/report", get(report))
        .route("/report/{consumer}", get(report_of))
        .with_state(state.clone())
        .merge(probes(Arc::new(state)))
}

/// What `/healthz` and `/readyz` ask of a process: every listener answers
/// them the same way, from its own [`Health`].
pub trait Health: Send + Sync + 'static {
    /// `Err(why)` when the process should be restarted.
    fn alive(&self) -> Result<(), String>;
    /// `Err(why)` when it should get no traffic (or, for a consumer, when it
    /// is not yet doing its share).
    fn ready(&self) -> Result<(), String>;
}

/// `GET /healthz` and `GET /readyz` from `health`: 200 `ok`/`ready`, or 503
/// with the reason on one line.
pub fn probes(health: Arc<dyn Health>) -> Router {
    fn answer(result: Result<(), String>, ok: &'static str) -> Response {
        match result {
            Ok(()) => (StatusCode::OK, ok).into_response(),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        }
    }
    Router::new()
        .route(
            "/healthz",
            get(|State(h): State<Arc<dyn Health>>| async move { answer(h.alive(), "ok\n") }),
        )
        .route(
            "/readyz",
            get(|State(h): State<Arc<dyn Health>>| async move { answer(h.ready(), "ready\n") }),
        )
        .with_state(health)
}

impl Health for HttpState {
    fn alive(&self) -> Result<(), String> {
        match self.consumers.iter().find(|(_, c)| !c.healthy()) {
            None => Ok(()),
            Some((name, _)) => Err(format!("{name}: consumer loop stalled")),
        }
    }

    fn ready(&self) -> Result<(), String> {
        for (name, c) in &self.consumers {
            if !c.ready() {
                let why = if !c.healthy() {
                    "consumer loop stalled"
                } else if c.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    "stopping"
                } else {
                    "not yet joined its consumer group"
                };
                return Err(format!("{name}: {why}"));
            }
        }
        Ok(())
    }
}

/// The bounds of a pod's own port (Prometheus scrapes and probes): in a
/// container it listens on 0.0.0.0, so it gets the collector's hardening.
pub const LIMITS: crate::server::Limits = crate::server::Limits {
    header_timeout: std::time::Duration::from_secs(10),
    max_connections: 256,
    max_header_bytes: crate::server::MAX_HEADER_BYTES,
};

/// Binds `addr` and serves until `shutdown`; returns the bound address (port
/// 0 picks a free one).
pub async fn serve(addr: SocketAddr, state: HttpState, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on HTTP_ADDR={addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let app = router(state);
    tokio::spawn(async move {
        let stopped = async move { shutdown.wait().await };
        crate::server::serve(listener, app, LIMITS, stopped).await;
    });
    tracing::info!("HTTP on http://{bound} (/metrics /healthz /readyz /report)");
    Ok(bound)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    metrics_response(state.telemetry).await
}

/// The Prometheus exposition of `telemetry` (rendered off the async threads).
pub async fn metrics_response(telemetry: Arc<Telemetry>) -> Response {
    let body = tokio::task::spawn_blocking(move || telemetry.render())
        .await
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

fn report_json(shared: &ConsumerShared) -> Response {
    match shared.report.read() {
        Ok(r) if !r.is_null() => Json(r.clone()).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "no report yet\n").into_response(),
    }
}

async fn report(State(state): State<HttpState>) -> Response {
    let chosen = state
        .consumers
        .iter()
        .find(|(n, _)| *n == "analytics")
        .or_else(|| state.consumers.first());
    match chosen {
        Some((_, shared)) => report_json(shared),
        None => (StatusCode::NOT_FOUND, "this command has no consumer report\n").into_response(),
    }
}

async fn report_of(State(state): State<HttpState>, Path(consumer): Path<String>) -> Response {
    match state.consumers.iter().find(|(n, _)| *n == consumer) {
        Some((_, shared)) => report_json(shared),
        None => (StatusCode::NOT_FOUND, format!("no consumer named {consumer} here\n")).into_response(),
    }
}
