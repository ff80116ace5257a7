//! HTTP from the tests' side: requests to the servers under test, through
//! the library's own client, and the sum of a metric from a `/metrics` page.

use std::net::SocketAddr;
use std::time::Duration;

use activity_tracker::http::client::{self, Limits, Request, Response};

/// Generous: a server under test may be slow on a loaded machine, and a
/// failure to answer shows as status 0 to tests that poll.
const LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(5),
    read_timeout: Duration::from_secs(20),
    max_response_bytes: 64 << 20,
};

/// The sum of the samples of metric `name` at `addr`'s `/metrics` whose
/// labels include every `key="value"` of `labels` (0 when there are none).
pub fn metric_sum(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

/// A request without a body: (status, body); status 0 when nothing answers
/// (yet), so callers can poll.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let r = http_send(addr, method, path, &[], b"");
    (r.status, r.body)
}

/// An HTTP answer: status (0 if there was none), body as text, headers.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    answer: Option<Response>,
}

impl HttpResponse {
    /// A header's value (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.answer.as_ref()?.header(name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request with extra headers and a body, on a new connection.
pub fn http_send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let request = Request {
        method,
        headers,
        body,
        ..Request::get(path)
    };
    match client::send(addr, &request, &LIMITS) {
        Ok(answer) => HttpResponse {
            status: answer.status,
            body: answer.text(),
            answer: Some(answer),
        },
        Err(_) => HttpResponse {
            status: 0,
            body: String::new(),
            answer: None,
        },
    }
}
