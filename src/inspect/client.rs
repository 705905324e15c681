//! The one HTTP request the buffer tools make: a `GET` with `Connection: close` to the
//! gateway's own ops endpoint, over hyper's HTTP/1.1 client connection (`hyper::client::conn`,
//! no pool: one request per tool run). The body is read with bounded memory, line by line or
//! whole; hyper does the framing (length, chunked). Every wait is bounded.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Secret;

/// Connecting to loopback either works or is refused at once; this is for odd setups.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the next bytes of an answer (the gateway reads the buffer meanwhile).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to reach an endpoint bound to `bind`: an unspecified address (`0.0.0.0`, `::`)
/// listens on loopback too.
pub fn connect_addr(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bind.port())
        }
        _ => bind,
    }
}

/// An answer whose head has been read; the body is read with [`Response::read_line`] or
/// [`Response::text`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    body: Incoming,
    /// Body bytes received and not yet returned.
    pending: BytesMut,
    ended: bool,
}

/// Sends `GET path` to `addr`, with `token` as its bearer token when given. `Ok(None)`:
/// nothing listens there (connection refused).
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&Secret>,
) -> io::Result<Option<Response>> {
    send(addr, hyper::Method::GET, path, token, Bytes::new()).await
}

/// Sends `POST path` with a JSON `body`; otherwise as [`get`].
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&Secret>,
    body: Bytes,
) -> io::Result<Option<Response>> {
    send(addr, hyper::Method::POST, path, token, body).await
}

async fn send(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    token: Option<&Secret>,
    body: Bytes,
) -> io::Result<Option<Response>> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out("connecting")),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(stream)) => stream,
    };
    let (mut sender, connection) = bounded(
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        "connecting",
    )
    .await?;
    // Drives the connection; it ends when the answer is read or dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let json = method == hyper::Method::POST;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    if json {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| bad(format!("cannot make the request for {path:?}: {e}")))?;
    let response = bounded(sender.send_request(request), "waiting for the answer").await?;
    Ok(Some(Response {
        status: response.status().as_u16(),
        body: response.into_body(),
        pending: BytesMut::new(),
        ended: false,
    }))
}

impl Response {
    /// The next line of the body (without its `\n`), `None` at the end. A line longer than
    /// `max` bytes is an error, so memory stays bounded whatever the peer sends.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line = self.pending.split_to(i + 1);
                return Ok(Some(line[..i].to_vec()));
            }
            if self.pending.len() > max {
                return Err(bad(format!("a line of the answer is over {max} bytes")));
            }
            if !self.receive().await? {
                let rest = std::mem::take(&mut self.pending);
                return Ok((!rest.is_empty()).then(|| rest.to_vec()));
            }
        }
    }

    /// The whole body as text, at most `max` bytes.
    pub async fn text(&mut self, max: usize) -> io::Result<String> {
        while self.receive().await? {
            if self.pending.len() > max {
                return Err(bad(format!("the answer is over {max} bytes")));
            }
        }
        let body = std::mem::take(&mut self.pending);
        String::from_utf8(body.to_vec()).map_err(|_| bad("the answer is not UTF-8".into()))
    }

    /// Appends the body's next data to `pending`; `false` at the end of the body.
    async fn receive(&mut self) -> io::Result<bool> {
        while !self.ended {
            match bounded_frame(&mut self.body).await? {
                None => self.ended = true,
                Some(frame) => {
                    // Trailers (none expected) carry no body bytes.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.pending.extend_from_slice(&data);
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }
}

async fn bounded_frame(body: &mut Incoming) -> io::Result<Option<hyper::body::Frame<Bytes>>> {
    match tokio::time::timeout(READ_TIMEOUT, body.frame()).await {
        Err(_) => Err(timed_out("reading the answer")),
        Ok(None) => Ok(None),
        Ok(Some(frame)) => frame.map(Some).map_err(|e| from_hyper(&e)),
    }
}

async fn bounded<T>(
    op: impl std::future::Future<Output = hyper::Result<T>>,
    what: &str,
) -> io::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, op)
        .await
        .map_err(|_| timed_out(what))?
        .map_err(|e| from_hyper(&e))
}

/// hyper's error as an IO error: an answer cut short says so (a gateway that stopped).
fn from_hyper(e: &hyper::Error) -> io::Error {
    let cut_short = e.is_incomplete_message()
        || std::iter::successors(std::error::Error::source(e), |e| e.source()).any(|cause| {
            cause
                .downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
        });
    if cut_short {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the gateway closed the connection before the end of its answer",
        )
    } else {
        bad(format!("the gateway's answer: {e}"))
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no progress {what} for {} s", READ_TIMEOUT.as_secs()),
    )
}

fn bad(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one connection with `answer` (raw bytes); returns what the request was.
    async fn answering(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            socket.write_all(answer).await.unwrap();
            let _ = socket.shutdown().await;
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (addr, server)
    }

    #[tokio::test]
    async fn a_chunked_answer_is_read_line_by_line_and_the_request_carries_the_token() {
        let (addr, server) = answering(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              4\r\nab\nc\r\n3\r\nd\nx\r\n0\r\n\r\n",
        )
        .await;
        let token = Secret::new("0123456789abcdef");
        let mut response = get(addr, "/buffer/export", Some(&token))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status, 200);
        let mut lines = Vec::new();
        while let Some(line) = response.read_line(100).await.unwrap() {
            lines.push(String::from_utf8(line).unwrap());
        }
        assert_eq!(lines, ["ab", "cd", "x"]);
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /buffer/export http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: bearer 0123456789abcdef\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("host: {addr}\r\n")), "{request}");
    }

    #[tokio::test]
    async fn long_lines_a_cut_answer_and_nobody_listening_are_told_apart() {
        let (addr, _server) =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n123456789").await;
        let mut response = get(addr, "/", None).await.unwrap().unwrap();
        let err = response.read_line(4).await.unwrap_err();
        assert!(err.to_string().contains("over 4 bytes"), "{err}");

        let (addr, _server) =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort").await;
        let mut response = get(addr, "/", None).await.unwrap().unwrap();
        let err = response.text(1000).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert!(get(addr, "/", None).await.unwrap().is_none());
    }
}
