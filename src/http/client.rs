//! The other side of these endpoints: a small blocking HTTP/1.1 client with
//! a connect timeout, a deadline for the answer and a bound on its size. The
//! fleet reads its replicas' `/report` with it, `probe` checks health with
//! it, and the integration tests talk to the servers under test through it.
//!
//! One request per connection (`Connection: close`); the body is framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//! connection. No TLS, no redirects, no keep-alive.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most bytes of status line and headers an answer may have.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// How long a request may take and how large its answer may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// To establish the TCP connection.
    pub connect_timeout: Duration,
    /// From connected to the whole answer read (writing the request
    /// included): a deadline, not a bound per read.
    pub read_timeout: Duration,
    /// The most bytes of the answer (status line, headers and body as
    /// received) that are read; a larger answer is an error.
    pub max_response_bytes: usize,
}

/// One request. [`Request::get`] is a plain GET; set the other fields to
/// send a method, headers or a body.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target, `/path?query`.
    pub path: &'a str,
    /// The `Host` header; the address connected to when `None`.
    pub host: Option<&'a str>,
    /// Extra headers (`Host`, `Connection` and `Content-Length` are set
    /// here).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            path,
            host: None,
            headers: &[],
            body: b"",
        }
    }
}

/// An answer, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// In the order received; names as sent.
    pub headers: Vec<(String, String)>,
    /// Without its transfer coding (chunks joined).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no complete answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("the answer from {addr} is larger than {limit} bytes")]
    TooLarge { addr: SocketAddr, limit: usize },
    #[error("not an HTTP response from {addr}: {detail}")]
    Malformed { addr: SocketAddr, detail: String },
    #[error("talking to {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// `GET path` from `addr`.
pub fn get(addr: SocketAddr, path: &str, limits: &Limits) -> Result<Response, Error> {
    send(addr, &Request::get(path), limits)
}

/// Sends `request` to `addr` on a new connection and reads the answer.
pub fn send(addr: SocketAddr, request: &Request<'_>, limits: &Limits) -> Result<Response, Error> {
    let mut stream =
        TcpStream::connect_timeout(&addr, limits.connect_timeout).map_err(|source| Error::Connect { addr, source })?;
    let deadline = Instant::now() + limits.read_timeout;
    let timeout = Error::Timeout {
        addr,
        timeout: limits.read_timeout,
    };
    let io = |source| Error::Io { addr, source };
    let host = request.host.map_or_else(|| addr.to_string(), str::to_string);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
        request.method, request.path
    );
    if !request.body.is_empty() || !matches!(request.method, "GET" | "HEAD" | "OPTIONS") {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    for (k, v) in request.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(limits.read_timeout)).map_err(io)?;
    // A server may answer (413, 401) and close before reading a large body:
    // a failed write is reported only if no answer can be read either.
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(request.body));
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if let Some(response) = parse(addr, &received, false)? {
            return Ok(response);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if received.len() > limits.max_response_bytes {
                    return Err(Error::TooLarge {
                        addr,
                        limit: limits.max_response_bytes,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(timeout);
            }
            // A reset after the answer arrived ends it like a close.
            Err(_) if !received.is_empty() => break,
            Err(e) => return Err(io(sent.err().unwrap_or(e))),
        }
    }
    match (parse(addr, &received, true)?, sent) {
        (Some(response), _) => Ok(response),
        (None, Err(e)) => Err(io(e)),
        (None, Ok(())) => Err(Error::Malformed {
            addr,
            detail: "the connection closed without an answer".into(),
        }),
    }
}

/// The response in `data` once it is complete; `None` while more may come
/// (`closed`: nothing more will).
fn parse(addr: SocketAddr, data: &[u8], closed: bool) -> Result<Option<Response>, Error> {
    let malformed = |detail: String| Error::Malformed { addr, detail };
    let shown = || format!("{:?}", String::from_utf8_lossy(&data[..data.len().min(64)]));
    let prefix = &b"HTTP/"[..data.len().min(5)];
    if !data.starts_with(prefix) {
        return Err(malformed(shown()));
    }
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        if data.len() > MAX_HEAD_BYTES {
            return Err(malformed(format!("no end of the head in {MAX_HEAD_BYTES} bytes")));
        }
        if closed && !data.is_empty() {
            return Err(malformed(format!("the head ends early: {}", shown())));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&data[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| malformed(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &data[end + 4..];
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response.header("content-length").map(str::parse::<usize>);
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Some(Vec::new())
    } else if chunked {
        dechunk(rest).map_err(malformed)?
    } else if let Some(length) = length {
        let length = length.map_err(|_| malformed("bad Content-Length".into()))?;
        (rest.len() >= length).then(|| rest[..length].to_vec())
    } else {
        closed.then(|| rest.to_vec())
    };
    match body {
        Some(body) => {
            response.body = body;
            Ok(Some(response))
        }
        None if closed => Err(malformed("the body ends early".into())),
        None => Ok(None),
    }
}

/// Joins the chunks of a chunked body; `None` until the last chunk arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers are not read: the body is complete.
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    const LIMITS: Limits = Limits {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        max_response_bytes: 4096,
    };

    /// A server that answers one connection with `reply` once it has read
    /// the request's head; returns its address and the head it read.
    fn answering(reply: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let head = read_head(&mut s);
            // The client may stop reading (too large): a failed write is
            // its business.
            let _ = s.write_all(&reply);
            head
        });
        (addr, server)
    }

    fn read_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    #[test]
    fn a_200_with_its_body_and_the_request_as_sent() {
        let (addr, server) = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: a b\r\n\r\nhello".to_vec());
        let r = get(addr, "/report?x=1", &LIMITS).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("x-thing"), Some("a b"));
        assert!(r.is_success());
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /report?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: {addr}\r\n")), "{head}");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert!(!head.contains("Content-Length"), "a GET has no body: {head}");
    }

    #[test]
    fn a_non_2xx_is_an_answer_not_an_error() {
        let (addr, _server) = answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\nstopping\n".to_vec());
        let r = get(addr, "/readyz", &LIMITS).unwrap();
        assert_eq!(
            (r.status, r.text().as_str()),
            (503, "stopping\n"),
            "body read to the close"
        );
        assert!(!r.is_success());
    }

    #[test]
    fn headers_and_a_body_are_sent_and_chunks_joined() {
        let reply =
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let head = read_head(&mut s);
            let mut body = [0u8; 2];
            s.read_exact(&mut body).unwrap();
            s.write_all(reply).unwrap();
            (head, body)
        });
        let request = Request {
            method: "POST",
            host: Some("example:80"),
            headers: &[("X-Write-Key", "k")],
            body: b"[]",
            ..Request::get("/v1/events")
        };
        let r = send(addr, &request, &LIMITS).unwrap();
        assert_eq!((r.status, r.text().as_str()), (202, "{\"a\":1}"));
        let (head, body) = server.join().unwrap();
        assert!(
            head.starts_with("POST /v1/events HTTP/1.1\r\nHost: example:80\r\n"),
            "{head}"
        );
        assert!(
            head.contains("Content-Length: 2\r\n") && head.contains("X-Write-Key: k\r\n"),
            "{head}"
        );
        assert_eq!(&body, b"[]");
    }

    #[test]
    fn an_oversized_answer_is_refused() {
        let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        reply.resize(reply.len() + 100_000, b'x');
        let (addr, _server) = answering(reply);
        let err = get(addr, "/metrics", &LIMITS).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 4096, .. }), "{err:?}");
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_head(&mut s);
            // Holds the connection open, silent, until the client gave up.
            let _ = done_rx.recv();
        });
        let limits = Limits {
            read_timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let started = Instant::now();
        let err = get(addr, "/healthz", &limits).unwrap_err();
        let took = started.elapsed();
        done_tx.send(()).unwrap();
        server.join().unwrap();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[test]
    fn garbage_a_truncated_body_and_no_listener_are_errors() {
        let (addr, _server) = answering(b"garbage".to_vec());
        let err = get(addr, "/", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("not an HTTP response"), "{err}");

        let (addr, _server) = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec());
        let err = get(addr, "/", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");

        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = get(addr, "/", &LIMITS).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
