//! `activity-tracker probe`: an HTTP health check for images without a
//! shell or curl (ours is distroless). Used by the docker compose
//! healthchecks and the chart's `helm test` hook.
//!
//! The target is a full `http://host:port/path` URL, or just a path on this
//! container's own server (HTTP_ADDR, with an unspecified address probed on
//! loopback). Exit status 0 means a 2xx answer within the timeout.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::http::client;

/// Where to send the request.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `target`; a bare path is resolved against `http_addr` (the
/// HTTP_ADDR the server listens on).
pub fn target(target: &str, http_addr: Option<&str>) -> anyhow::Result<Target> {
    if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority).with_context(|| format!("bad URL {target:?}"))?;
        return Ok(Target {
            host,
            port: port.unwrap_or(80),
            path: path.to_string(),
        });
    }
    if target.contains("://") {
        bail!("only http:// URLs can be probed, not {target:?}");
    }
    if !target.starts_with('/') {
        bail!("give an http:// URL or a path starting with /, not {target:?}");
    }
    let addr = http_addr
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("probing a path needs HTTP_ADDR (the address the server listens on); or give a URL"))?;
    let (host, port) = split_host_port(addr).with_context(|| format!("bad HTTP_ADDR {addr:?}"))?;
    let port = port.ok_or_else(|| anyhow!("HTTP_ADDR {addr:?} has no port"))?;
    let host = match host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        _ => host,
    };
    Ok(Target {
        host,
        port,
        path: target.to_string(),
    })
}

fn split_host_port(authority: &str) -> anyhow::Result<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| anyhow!("unclosed ["))?;
        let after = &rest[end + 1..];
        (&rest[..end], after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| anyhow!("bad port {p:?}")))
        .transpose()?;
    Ok((host.to_string(), port))
}

/// Sends `GET path` and returns the status code. Each address the host
/// resolves to is tried until one accepts the connection.
pub fn get(target: &Target, timeout: Duration) -> anyhow::Result<u16> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?
        .collect();
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = client::Request {
        host: Some(&host),
        headers: &[("User-Agent", "activity-tracker-probe")],
        ..client::Request::get(&target.path)
    };
    let limits = client::Limits {
        connect_timeout: timeout,
        read_timeout: timeout,
        // Health answers are a line; this only stops an endless one.
        max_response_bytes: 1 << 20,
    };
    let mut last = None;
    for addr in addrs {
        match client::send(addr, &request, &limits) {
            Ok(response) => return Ok(response.status),
            Err(e @ client::Error::Connect { .. }) => last = Some(anyhow!(e)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("{} resolves to no address", target.host)))
}

/// The subcommand: checks `target_arg` (a bare path is resolved against
/// `http_addr`, the server's HTTP_ADDR), prints `ok: …` on a 2xx answer and
/// fails with the reason otherwise.
pub fn run_command(target_arg: &str, http_addr: Option<&str>, timeout: Duration) -> anyhow::Result<()> {
    let t = target(target_arg, http_addr).context("unhealthy")?;
    let code = get(&t, timeout).context("unhealthy")?;
    if !(200..300).contains(&code) {
        bail!("unhealthy: {code} from {}:{}{}", t.host, t.port, t.path);
    }
    println!("ok: {code} from {}:{}{}", t.host, t.port, t.path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn urls_and_paths_resolve_to_targets() {
        let t = target("http://svc.ns.svc:8080/readyz", None).unwrap();
        assert_eq!(
            t,
            Target {
                host: "svc.ns.svc".into(),
                port: 8080,
                path: "/readyz".into()
            }
        );
        let t = target("http://[::1]:9/", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert_eq!(target("http://example", None).unwrap().port, 80);
        let t = target("/healthz", Some("0.0.0.0:8080")).unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/healthz".into()
            }
        );
        assert_eq!(target("/readyz", Some("[::]:81")).unwrap().host, "::1");
    }

    #[test]
    fn bad_targets_are_clear_errors() {
        for (arg, addr, needle) in [
            ("https://x/", None, "only http://"),
            ("readyz", None, "path starting with /"),
            ("/readyz", None, "needs HTTP_ADDR"),
            ("/readyz", Some("0.0.0.0"), "no port"),
            ("http://x:99999/", None, "bad port"),
        ] {
            let err = format!("{:#}", target(arg, addr).unwrap_err());
            assert!(err.contains(needle), "{arg}: {err}");
        }
    }

    #[test]
    fn probes_a_real_server_and_reports_its_status() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for reply in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
                "garbage",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "the request ends with an empty line");
                    request.extend_from_slice(&buf[..n]);
                }
                assert!(request.starts_with(b"GET /readyz HTTP/1.1\r\n"));
                s.write_all(reply.as_bytes()).unwrap();
            }
        });
        let t = target("/readyz", Some(&format!("0.0.0.0:{port}"))).unwrap();
        assert_eq!(get(&t, Duration::from_secs(5)).unwrap(), 200);
        assert_eq!(get(&t, Duration::from_secs(5)).unwrap(), 503);
        assert!(get(&t, Duration::from_secs(5)).is_err());
        server.join().unwrap();
        // Nothing listens any more.
        assert!(get(&t, Duration::from_secs(2)).is_err());
    }
}
