//! The byte stream a simulated device talks over: a TCP connection to a listener, or a
//! serial device (`--serial`), with writes and answer reads that are all bounded in time.
//!
//! Answers are read through one buffer, so a text answer split over two reads, or two
//! answers in one read, come out one at a time. A command from the gateway found in that
//! buffer (before an answer, or while the device lingers after its last record) is answered
//! at once (`commands`), as firmware does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_serial::SerialPortBuilderExt;

use super::commands::{Front, Responder};
use super::{Device, Fault};

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
    /// Answers the gateway's commands wherever they turn up in the stream.
    responder: Responder,
    /// Commands answered, over all devices.
    answered: Arc<AtomicU64>,
    /// How long to stay connected after the last record, answering commands.
    linger: Duration,
}

impl Link {
    /// Connects (TCP, retried for a few seconds) or opens the serial device of `device`.
    pub async fn open(device: &Device) -> Result<Link, Fault> {
        let (target, timeout) = (&device.plan.target, device.plan.reply_timeout);
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
            responder: Responder::new(device.plan.protocol, &device.id, device.index),
            answered: device.commands_answered(),
            linger: device.plan.linger,
        })
    }

    /// Answers every whole command at the front of what the gateway sent, as the firmware
    /// does between its own messages.
    async fn answer_commands(&mut self) -> Result<(), Fault> {
        loop {
            match self.responder.front(&self.input) {
                Front::Command { consumed, answer } => {
                    self.input.drain(..consumed);
                    self.send(&answer).await?;
                    self.answered.fetch_add(1, Ordering::Relaxed);
                }
                Front::Partial => self.fill("a command").await?,
                Front::Other => return Ok(()),
            }
        }
    }

    /// After the last record: stays connected for `--linger-s`, answering commands; anything
    /// else the gateway sends then is a failure.
    pub async fn linger(&mut self) -> Result<(), Fault> {
        if self.linger.is_zero() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        loop {
            self.answer_commands().await?;
            if !self.input.is_empty() {
                let hex: String = self
                    .input
                    .iter()
                    .take(32)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                return Err(Fault::Failed(format!(
                    "while lingering the gateway sent bytes that are no command: {hex}"
                )));
            }
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => {
                    return Err(Fault::Closed(
                        "the gateway closed the connection while the device lingered".into(),
                    ))
                }
                Ok(Ok(n)) => self
                    .input
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Ok(Err(e)) => return Err(Fault::Failed(format!("connection lost lingering: {e}"))),
            }
        }
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
        loop {
            self.answer_commands().await?;
            if self.input.len() >= n {
                return Ok(self.input.drain(..n).collect());
            }
            self.fill(what).await?;
        }
    }

    /// Everything up to and including the next `end` byte: a text answer.
    pub async fn read_until(&mut self, end: u8, what: &str) -> Result<Vec<u8>, Fault> {
        loop {
            self.answer_commands().await?;
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
        self.linger().await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use firmware_protocols::teltonika::encode::Codec;
    use firmware_protocols::Protocol;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::super::{Device, Plan, Tally};
    use super::Target;

    fn device(protocol: Protocol, addr: String, linger: Duration) -> Device {
        Device {
            index: 0,
            id: "356307042000000".into(),
            plan: Arc::new(Plan {
                protocol,
                target: Target::Net(addr),
                records: 2,
                per_packet: 2,
                codec: Codec::Codec8,
                reply_timeout: Duration::from_secs(10),
                chunk_interval: None,
                linger,
            }),
            tally: Arc::new(Tally::default()),
            next_chunk: std::time::Instant::now(),
        }
    }

    /// A Wialon device against a scripted gateway: a command arriving before the answer to
    /// its black box is answered first, one sent after the last record while the device
    /// lingers is answered too.
    #[tokio::test]
    async fn a_device_answers_commands_before_its_answers_and_while_lingering() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gateway = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut next = async move || lines.next_line().await.unwrap().unwrap_or_default();
            assert!(next().await.starts_with("#L#2.0;356307042000000;"));
            write.write_all(b"#AL#1\r\n").await.unwrap();
            assert!(next().await.starts_with("#B#"));
            write.write_all(b"#M#first\r\n#AB#2\r\n").await.unwrap();
            assert_eq!(next().await, "#AM#1");
            write.write_all(b"#M#second\r\n").await.unwrap();
            assert_eq!(next().await, "#AM#1");
            // Held open until the device leaves after lingering.
            assert_eq!(next().await, "");
        });
        let mut device = device(Protocol::Wialon, addr, Duration::from_millis(1500));
        super::super::wialon::run(&mut device).await.unwrap();
        gateway.await.unwrap();
        let answered = device
            .commands_answered()
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(answered, 2);
    }
}
