//! The byte stream a simulated device talks over: a TCP connection to a listener, or a
//! serial device (`--serial`), with writes and answer reads that are all bounded in time.
//!
//! Answers are read through one buffer, so a text answer split over two reads, or two
//! answers in one read, come out one at a time.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_serial::SerialPortBuilderExt;

use super::Fault;

/// Where the devices connect.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `host:port` of a TCP or UDP listener.
    Net(String),
    /// A serial device and its baud rate.
    Serial(PathBuf, u32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Net(addr) => write!(f, "{addr}"),
            Target::Serial(path, baud) => write!(f, "serial {} at {baud} baud", path.display()),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long a connection may take to come up; the listener may still be starting.
const CONNECT_TRIES: u32 = 50;
const CONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The longest answer read before giving up on its end marker.
const MAX_ANSWER: usize = 4096;

pub(crate) struct Link {
    io: Box<dyn Io>,
    /// Bytes read past the last answer.
    input: Vec<u8>,
    timeout: Duration,
    /// A serial device never closes: there is no end to wait for.
    serial: bool,
}

impl Link {
    /// Connects (TCP, retried for a few seconds) or opens the serial device.
    pub async fn open(target: &super::Target, timeout: Duration) -> Result<Link, Fault> {
        let io: Box<dyn Io> = match target {
            Target::Net(addr) => Box::new(connect(addr, timeout).await?),
            Target::Serial(path, baud) => Box::new(
                tokio_serial::new(path.to_string_lossy(), *baud)
                    .open_native_async()
                    .map_err(|e| Fault::Failed(format!("cannot open {}: {e}", path.display())))?,
            ),
        };
        Ok(Link {
            io,
            input: Vec::new(),
            timeout,
            serial: matches!(target, Target::Serial(..)),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let written = tokio::time::timeout(self.timeout, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Fault::Failed(format!("write failed: {e}"))),
            Err(_) => Err(Fault::Failed(format!(
                "the gateway read nothing for {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// The next `n` bytes: a binary answer of known length.
    pub async fn read_exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>, Fault> {
        while self.input.len() < n {
            self.fill(what).await?;
        }
        Ok(self.input.drain(..n).collect())
    }

    /// Everything up to and including the next `end` byte: a text answer.
    pub async fn read_until(&mut self, end: u8, what: &str) -> Result<Vec<u8>, Fault> {
        loop {
            if let Some(at) = self.input.iter().position(|&b| b == end) {
                return Ok(self.input.drain(..=at).collect());
            }
            if self.input.len() > MAX_ANSWER {
                return Err(Fault::Failed(format!(
                    "wrong answer to {what}: {} bytes without an end",
                    self.input.len()
                )));
            }
            self.fill(what).await?;
        }
    }

    /// After the last write: says so (TCP half-close) and waits until the gateway closes in
    /// turn, which it does once it has read, stored and answered everything before. A
    /// serial device is only flushed.
    pub async fn finish(&mut self) -> Result<(), Fault> {
        if self.serial {
            return self.send(&[]).await;
        }
        let _ = self.io.shutdown().await;
        let mut scratch = [0u8; 1024];
        let drained = tokio::time::timeout(self.timeout, async {
            loop {
                match self.io.read(&mut scratch).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match drained {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Fault::Failed(format!("connection lost at the end: {e}"))),
            Err(_) => Err(Fault::Failed(format!(
                "the gateway did not close the connection within {} s of the last record",
                self.timeout.as_secs()
            ))),
        }
    }

    async fn fill(&mut self, what: &str) -> Result<(), Fault> {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(self.timeout, self.io.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(Fault::Closed(format!(
                "the gateway closed the connection instead of answering {what}"
            ))),
            Ok(Ok(n)) => {
                self.input
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(())
            }
            Ok(Err(e)) => Err(Fault::Failed(format!(
                "connection lost waiting for the answer to {what}: {e}"
            ))),
            Err(_) => Err(Fault::Failed(format!(
                "no answer to {what} within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Fault> {
    let mut last = String::new();
    for _ in 0..CONNECT_TRIES {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no connection within {} s", timeout.as_secs()),
        }
        tokio::time::sleep(CONNECT_PAUSE).await;
    }
    Err(Fault::Failed(format!("cannot connect to {addr}: {last}")))
}
