//! A bare HTTP/1.1 client over a TcpStream, so tests can send exactly the
//! bytes an attacker would (odd headers, lying lengths, cookies) and read
//! exactly what the server answered.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A refusal: problem+json with its status, reason and request id.
    pub fn problem(&self, status: u16, reason: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(p["reason"], reason, "{p}");
        assert!(p["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
        assert_eq!(self.header("x-request-id"), p["request_id"].as_str(), "{p}");
        p
    }
}

/// Sends raw bytes and reads the answer (the request asks to close).
pub fn raw(addr: &str, request: &[u8]) -> Response {
    let stream = TcpStream::connect(addr).expect("connect to the API");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(stream, request)
}

/// The same over TLS, trusting only `ca_pem` and checking the name 127.0.0.1.
pub fn raw_tls(addr: &str, ca_pem: &std::path::Path, request: &[u8]) -> Result<Response, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut tcp = TcpStream::connect(addr).expect("connect to the API");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| match e.into_inner() {
            Some(inner) => match inner.downcast::<rustls::Error>() {
                Ok(e) => *e,
                Err(other) => rustls::Error::General(other.to_string()),
            },
            None => rustls::Error::General("handshake I/O".into()),
        })?;
    }
    Ok(exchange(rustls::StreamOwned::new(conn, tcp), request))
}

fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Response {
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    Response { status, headers, body }
}

/// A request with these headers and body (Content-Length set from it).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes)
}

/// POST JSON with a bearer token (and any other headers).
pub fn post_json(addr: &str, path: &str, token: &str, extra: &[(&str, &str)], body: &str) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    request(addr, "POST", path, &headers, body.as_bytes())
}

/// A running `resq serve`, stopped (TERM) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: std::path::PathBuf,
}

impl Server {
    /// Starts `resq serve` on a free loopback port with `cmd`'s settings.
    pub fn start(mut cmd: Command, log: std::path::PathBuf) -> Server {
        cmd.args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("start resq serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| {
                panic!(
                    "resq serve said {line:?}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server { child, addr, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// TERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        super::wait_child(&mut self.child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
