//! HTTP from the tests' side: requests to the servers under test, and the
//! sum of a metric from a `/metrics` page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

/// A minimal HTTP/1.1 request: (status, body); status 0 when nothing answers
/// (yet), so callers can poll.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let r = http_send(addr, method, path, &[], b"");
    (r.status, r.body)
}

/// An HTTP answer: status (0 if there was none), raw header block, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    /// A header's value (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request with extra headers and a body, on a new connection.
pub fn http_send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let failed = HttpResponse {
        status: 0,
        headers: String::new(),
        body: String::new(),
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return failed;
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut raw = Vec::new();
    // A server may answer (413) and close before reading a large body.
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));
    if stream.read_to_end(&mut raw).is_err() && sent.is_err() {
        return failed;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    HttpResponse {
        status,
        headers: head.to_string(),
        body: dechunk(body),
    }
}

/// Undoes `Transfer-Encoding: chunked` if present.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size_line, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 {
            return out;
        }
        if after.len() < size {
            return body.to_string();
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}
