//! The smallest HTTP/1.1 client the buffer tools need: one `GET` with `Connection: close` to
//! the gateway's own ops endpoint over a tokio `TcpStream`, a body read with bounded memory
//! (`Content-Length`, chunked, or up to the close), line by line. Every wait is bounded.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connecting to loopback either works or is refused at once; this is for odd setups.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the next bytes of an answer (the gateway reads the buffer meanwhile).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest status or header line, and most header lines.
const MAX_HEAD_LINE: u64 = 8 << 10;
const MAX_HEADERS: usize = 100;

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

/// An answer whose head has been read; the body is read with [`Response::read_line`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    reader: BufReader<TcpStream>,
    framing: Framing,
}

#[derive(Debug)]
enum Framing {
    /// Bytes of the body left.
    Length(u64),
    /// Bytes of the current chunk left (0: a size line comes next); `done` after the last.
    Chunked { left: u64, done: bool },
    /// Up to the close.
    UntilClose,
}

/// Sends `GET path` to `addr`. `Ok(None)`: nothing listens there (connection refused).
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<Option<Response>> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out("connecting")),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(stream)) => stream,
    };
    let mut reader = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    bounded(
        reader.get_mut().write_all(request.as_bytes()),
        "sending the request",
    )
    .await?;

    let status_line = head_line(&mut reader).await?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("not an HTTP status line: {status_line:?}")))?;
    let mut framing = Framing::UntilClose;
    for n in 0.. {
        let line = head_line(&mut reader).await?;
        if line.is_empty() {
            break;
        }
        if n >= MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} header lines")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("not a header line: {line:?}")));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked {
                left: 0,
                done: false,
            };
        } else if name == "content-length" && !matches!(framing, Framing::Chunked { .. }) {
            let length = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            framing = Framing::Length(length);
        }
    }
    Ok(Some(Response {
        status,
        reader,
        framing,
    }))
}

impl Response {
    /// The next line of the body (without its `\n`), `None` at the end. A line longer than
    /// `max` bytes is an error, so memory stays bounded whatever the peer sends.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        loop {
            let available = self.fill().await?;
            if available.is_empty() {
                return Ok((!line.is_empty()).then_some(line));
            }
            let (take, end) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let body = &available[..take];
            line.extend_from_slice(body.strip_suffix(b"\n").unwrap_or(body));
            self.consume(take);
            if line.len() > max {
                return Err(bad(format!("a line of the answer is over {max} bytes")));
            }
            if end {
                return Ok(Some(line));
            }
        }
    }

    /// The whole body as text, at most `max` bytes.
    pub async fn text(&mut self, max: usize) -> io::Result<String> {
        let mut body = Vec::new();
        loop {
            let available = self.fill().await?;
            if available.is_empty() {
                break;
            }
            body.extend_from_slice(available);
            let n = available.len();
            self.consume(n);
            if body.len() > max {
                return Err(bad(format!("the answer is over {max} bytes")));
            }
        }
        String::from_utf8(body).map_err(|_| bad("the answer is not UTF-8".into()))
    }

    /// Body bytes buffered and ready (empty at the end of the body), reading more if needed.
    async fn fill(&mut self) -> io::Result<&[u8]> {
        let limit = match &mut self.framing {
            Framing::Length(0) => return Ok(&[]),
            Framing::Length(left) => *left,
            Framing::UntilClose => u64::MAX,
            Framing::Chunked { done: true, .. } => return Ok(&[]),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    // The CRLF that ends the previous chunk's data, then the size line.
                    let mut line = head_line(&mut self.reader).await?;
                    if line.is_empty() {
                        line = head_line(&mut self.reader).await?;
                    }
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
                    if size == 0 {
                        // Trailers (none expected) up to the empty line.
                        for _ in 0..=MAX_HEADERS {
                            if head_line(&mut self.reader).await?.is_empty() {
                                *done = true;
                                return Ok(&[]);
                            }
                        }
                        return Err(bad("too many trailer lines".into()));
                    }
                    *left = size;
                }
                *left
            }
        };
        let available = bounded(self.reader.fill_buf(), "reading the answer").await?;
        if available.is_empty() {
            return match self.framing {
                Framing::UntilClose => Ok(&[]),
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gateway closed the connection before the end of its answer",
                )),
            };
        }
        let n = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(available.len());
        Ok(&available[..n])
    }

    /// Marks `n` bytes of what [`Response::fill`] returned as read.
    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        match &mut self.framing {
            Framing::Length(left) => *left -= n as u64,
            Framing::Chunked { left, .. } => *left -= n as u64,
            Framing::UntilClose => {}
        }
    }
}

/// One line of the head (or a chunk size line), without its CRLF.
async fn head_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_HEAD_LINE);
    bounded(limited.read_until(b'\n', &mut line), "reading the answer").await?;
    if !line.ends_with(b"\n") {
        return Err(if line.len() as u64 >= MAX_HEAD_LINE {
            bad(format!("a header line is over {MAX_HEAD_LINE} bytes"))
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gateway closed the connection in the middle of its answer",
            )
        });
    }
    let text = String::from_utf8(line).map_err(|_| bad("a header line is not UTF-8".into()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

async fn bounded<T>(
    op: impl std::future::Future<Output = io::Result<T>>,
    what: &str,
) -> io::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, op)
        .await
        .map_err(|_| timed_out(what))?
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
