//! Serial ports: a GNSS receiver, a sensor or a tracker on a UART or USB adapter.
//!
//! A port that is missing at start is a log line, not a failed start: it is opened when it
//! appears. A port that goes away (a read of `Ok(0)`, which tokio-serial repeats forever
//! after an unplug, or an error) ends its session and is reopened with exponential backoff,
//! so an unplugged adapter never spins a core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_protocols::{DecoderOptions, StreamDecoder};
use tokio::sync::watch;
use tokio_serial::SerialPortBuilderExt;

use super::session::{Session, SessionConfig};
use crate::buffer::Buffer;
use crate::config::{SerialSettings, Settings};

/// First delay before reopening; doubles up to the port's `reopen_max_ms`.
const REOPEN_INITIAL: Duration = Duration::from_millis(500);
/// A port that stayed open this long starts its next reopen schedule from the beginning.
const STABLE_AFTER: Duration = Duration::from_secs(30);

pub struct SerialPort {
    pub index: usize,
    settings: SerialSettings,
    session: Arc<SessionConfig>,
}

impl SerialPort {
    pub fn new(
        index: usize,
        s: &SerialSettings,
        make_decoder: fn(&DecoderOptions) -> Box<dyn StreamDecoder>,
        settings: &Settings,
        commands: Option<&crate::commands::Commands>,
    ) -> SerialPort {
        let session = Arc::new(SessionConfig {
            protocol: s.protocol.clone(),
            make_decoder,
            decoder: DecoderOptions {
                device_id: s.device_id.clone(),
                ..super::decoder_options(settings)
            },
            idle_timeout: None,
            first_frame_timeout: None,
            allowed_devices: super::AllowList::default(),
            close_on_junk: false,
            commands: commands.map(|c| crate::commands::Port {
                commands: c.clone(),
                source: crate::commands::config::Source::Serial(index),
            }),
            filter: crate::clean::Filter::new(s.filter.clone()),
        });
        SerialPort {
            index,
            settings: s.clone(),
            session,
        }
    }

    /// Opens, serves and reopens the port until `shutdown`.
    pub async fn serve(self, buffer: Buffer, mut shutdown: watch::Receiver<bool>) {
        let (path, index) = (self.settings.path.as_str(), self.index);
        let protocol = self.session.protocol.as_str();
        let max_delay = Duration::from_millis(self.settings.reopen_max_ms);
        let mut delay = REOPEN_INITIAL;
        let mut reported_missing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match tokio_serial::new(path, self.settings.baud).open_native_async() {
                Ok(port) => {
                    tracing::info!(
                        serial = index,
                        path,
                        protocol,
                        baud = self.settings.baud,
                        "serial port open"
                    );
                    reported_missing = false;
                    let opened = Instant::now();
                    let session =
                        Session::new(self.session.clone(), path.to_string(), buffer.clone());
                    session.run(port, shutdown.clone(), ()).await;
                    if *shutdown.borrow() {
                        return;
                    }
                    if opened.elapsed() >= STABLE_AFTER {
                        delay = REOPEN_INITIAL;
                    }
                    crate::warn_bad_input!(
                        path,
                        "serial port closed; reopening",
                        serial = index,
                        path,
                        protocol,
                        retry_in_ms = delay.as_millis() as u64
                    );
                }
                Err(e) => {
                    // Said once per absence at warn, then quietly, so a port that never comes
                    // back does not flood the journal.
                    if reported_missing {
                        tracing::debug!(serial = index, path, error = %e, "serial port still unavailable");
                    } else {
                        tracing::warn!(serial = index, path, protocol, error = %e, "serial port unavailable; will keep trying");
                        reported_missing = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(max_delay);
        }
    }
}
