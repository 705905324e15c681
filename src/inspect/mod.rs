//! `fleetedge buffer stats` and `fleetedge buffer export`: an installer's look into the
//! durable buffer, without stopping the service if it runs.
//!
//! sled locks its database for one process, so while `fleetedge run` runs nobody else can
//! open the buffer. The tools therefore ask the running gateway first, on its ops endpoint
//! (`http.bind`: `GET /buffer/stats`, `GET /buffer/export`, see [`crate::ops::http`]); only
//! when nothing listens there (connection refused) do they open `buffer.path` themselves.
//! stderr says which: `… from the running gateway at ADDR` or `… from PATH (gateway not
//! running)`. A gateway that runs with `http.bind = ""` holds the lock and cannot be asked:
//! that is an error saying so.
//!
//! Opening the buffer directly is [`Buffer::open`] with disk reclaim off, and nothing is
//! acknowledged or removed. What `open` itself may do is what the gateway would do at its
//! next start anyway: settle an interrupted reclaim, quarantine a chunk with a bad header,
//! move a database sled reports as corrupt aside. Reading never moves anything: an export
//! skips an undecodable chunk with a warning and leaves it in place (see [`export`]). sled may
//! write its own files (a snapshot) on open, so run the tools as the service's user.
//!
//! - [`report`]: what `stats` shows, and its text form.
//! - [`export`]: the backlog as JSON lines, slice by slice.
//! - [`client`]: the HTTP/1.1 GET (hyper) that reaches the running gateway.

pub mod client;
pub mod export;
pub mod report;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};

use crate::buffer::Buffer;
use crate::config::{LogSettings, Settings};
use report::BufferReport;

/// Most bytes of a `/buffer/stats` answer.
const MAX_STATS_BYTES: usize = 1 << 20;
/// Longest export line accepted from the gateway (a record with `raw` kept is far smaller).
const MAX_LINE_BYTES: usize = 64 << 20;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BufferCommand {
    /// Show the backlog: depth, oldest record and its age, seqs, disk use, limits, fill.
    ///
    /// Asks the running gateway at the config's http.bind (GET /buffer/stats); if nothing
    /// listens there, opens buffer.path directly (only possible while the gateway is
    /// stopped). stderr says which was used.
    Stats {
        /// The gateway's config file (http.bind and buffer.* are read from it).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the backlog as JSON lines (one record a line, the payload's record JSON with
    /// its seq), oldest first, without acknowledging or removing anything.
    ///
    /// Asks the running gateway at the config's http.bind (GET /buffer/export); if nothing
    /// listens there, opens buffer.path directly (only possible while the gateway is
    /// stopped). stderr says which was used; an unreadable chunk is skipped with a warning.
    Export {
        /// The gateway's config file (http.bind and buffer.* are read from it).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Output file; `-` is standard output.
        #[arg(long, short, value_name = "FILE", default_value = "-")]
        output: PathBuf,
        /// At most this many records (the oldest).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Read a database kept aside instead (`<buffer.path>.damaged-…` or
        /// `.corrupt-…`, named in the gateway's log): opened read-only as it is, never moved.
        /// Records the gateway re-queued from it are exported again with the same seqs.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
}

/// Runs a `fleetedge buffer …` command: exit 0 on success, 2 for a bad config, 1 otherwise.
pub fn run(command: BufferCommand) -> ExitCode {
    let config = match &command {
        BufferCommand::Stats { config, .. } | BufferCommand::Export { config, .. } => config,
    };
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    // Warnings and errors of a direct open (a quarantined chunk) go to stderr.
    crate::logging::init(&LogSettings {
        level: "warn".into(),
        ..settings.log.clone()
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetedge buffer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        BufferCommand::Stats { json, .. } => runtime.block_on(stats(&settings, json)),
        BufferCommand::Export {
            output,
            limit,
            from,
            ..
        } => runtime.block_on(export(&settings, &output, limit, from)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetedge buffer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the answer comes from.
enum Source {
    /// The running gateway's endpoint, with the answer's head read.
    Gateway(SocketAddr, client::Response),
    /// Nothing listens on `http.bind` (or it is off): the buffer, opened here.
    Direct(Buffer),
}

/// Asks the gateway for `path`; falls back to opening the buffer when nothing listens.
async fn source(settings: &Settings, path: &str) -> anyhow::Result<Source> {
    let bind = settings.http.addr().map_err(|e| anyhow!(e))?;
    if let Some(bind) = bind {
        let addr = client::connect_addr(bind);
        let token = settings.http.token().map_err(|e| anyhow!(e))?;
        let answer = client::get(addr, path, token.as_ref())
            .await
            .with_context(|| format!("asking the gateway at {addr} (http.bind) for {path}"))?;
        if let Some(mut response) = answer {
            if response.status != 200 {
                let body = response.text(MAX_STATS_BYTES).await.unwrap_or_default();
                bail!(
                    "the gateway at {addr} (http.bind) answered {path} with HTTP {}: {}{}",
                    response.status,
                    body.trim(),
                    match response.status {
                        404 => {
                            " (a gateway older than this tool? stop it to read the buffer \
                             directly)"
                        }
                        401 if token.is_some() => {
                            " (this tool's http.token differs from the gateway's)"
                        }
                        401 => {
                            " (set http.token_file or FLEETEDGE__HTTP__TOKEN as the service has \
                             it)"
                        }
                        _ => "",
                    }
                );
            }
            return Ok(Source::Gateway(addr, response));
        }
    }
    let buffer = tokio::task::spawn_blocking({
        let settings = settings.clone();
        move || open_directly(&settings)
    })
    .await
    .context("opening the buffer")??;
    Ok(Source::Direct(buffer))
}

/// Opens `buffer.path` for reading: never creates it, never reclaims.
fn open_directly(settings: &Settings) -> anyhow::Result<Buffer> {
    let path = &settings.buffer.path;
    if !path.is_dir() {
        bail!(
            "buffer.path: {} is not a directory: no buffer there (the gateway has not run with \
             this config yet, or buffer.path points elsewhere)",
            path.display()
        );
    }
    refuse_foreign_owner(path)?;
    let mut options = settings.buffer.options();
    options.reclaim_above_bytes = 0;
    options.min_free_bytes = 0;
    Buffer::open(options).map_err(|e| match e {
        e if e.is_lock_held() => anyhow!(
            "the buffer at {} is locked by another process: the gateway is running{}. Set \
             http.bind (e.g. \"127.0.0.1:9780\") and restart the service so these tools can ask \
             it, or stop the service to read the buffer directly",
            path.display(),
            match &settings.http.bind {
                b if b.is_empty() => " with its ops endpoint off (http.bind = \"\")".to_string(),
                b => format!(" but nothing answers at http.bind = {b:?}"),
            }
        ),
        e => anyhow::Error::new(e).context(format!("buffer.path: cannot open {}", path.display())),
    })
}

/// Opens a database kept aside (`--from`) to read it: no durable mark, no reclaim, and a
/// database sled cannot open is an error, never moved again.
fn open_kept_aside(settings: &Settings, dir: &Path) -> anyhow::Result<Buffer> {
    if !dir.is_dir() {
        bail!("--from: {} is not a directory", dir.display());
    }
    refuse_foreign_owner(dir)?;
    let mut options = settings.buffer.options();
    options.path = dir.to_path_buf();
    options.reclaim_above_bytes = 0;
    options.min_free_bytes = 0;
    options.salvage = true;
    Buffer::open(options).with_context(|| {
        format!(
            "--from: sled cannot open {} (nothing in it can be read with sled)",
            dir.display()
        )
    })
}

/// sled may write files on open (a snapshot, a settled recovery). Written by another user
/// (typically `sudo` as root), they would belong to that user, and the service, which runs as
/// the directory's owner, could no longer open its own buffer. So only the owner opens it.
fn refuse_foreign_owner(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path)
        .with_context(|| format!("buffer.path: cannot read {}", path.display()))?
        .uid();
    match effective_uid() {
        Some(me) if me != owner => bail!(
            "buffer.path: {} belongs to uid {owner} but this runs as uid {me}; files opening it \
             writes would belong to uid {me} and the service could no longer open its buffer. \
             Run as the owner, e.g. `sudo -u fleetedge fleetedge buffer …`",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`); `None` where
/// that cannot be read, and then the check is skipped.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn say_source(what: &str, source: &Source, path: &Path) {
    match source {
        Source::Gateway(addr, _) => eprintln!("{what} from the running gateway at {addr}"),
        Source::Direct(_) => {
            eprintln!("{what} from {} (gateway not running)", path.display())
        }
    }
}

async fn stats(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let source = source(settings, "/buffer/stats").await?;
    say_source("buffer stats", &source, &settings.buffer.path);
    let (origin, report) = match source {
        Source::Gateway(addr, mut response) => {
            let body = response
                .text(MAX_STATS_BYTES)
                .await
                .with_context(|| format!("reading /buffer/stats from {addr}"))?;
            let report: BufferReport = serde_json::from_str(&body).with_context(|| {
                format!("the gateway at {addr} sent stats this tool cannot read")
            })?;
            (
                serde_json::json!({"source": "gateway", "address": addr.to_string()}),
                report,
            )
        }
        Source::Direct(buffer) => {
            let report = tokio::task::spawn_blocking(move || report::collect(&buffer))
                .await
                .context("reading the buffer")??;
            (serde_json::json!({"source": "direct"}), report)
        }
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(map), Some(origin)) = (value.as_object_mut(), origin.as_object()) {
            map.extend(origin.clone());
        }
        println!("{value}");
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

async fn export(
    settings: &Settings,
    output: &Path,
    limit: Option<u64>,
    from: Option<PathBuf>,
) -> anyhow::Result<()> {
    let query = match limit {
        Some(n) => format!("/buffer/export?limit={n}"),
        None => "/buffer/export".to_string(),
    };
    let source = match from.clone() {
        Some(dir) => {
            let buffer = tokio::task::spawn_blocking({
                let settings = settings.clone();
                move || open_kept_aside(&settings, &dir)
            })
            .await
            .context("opening the database kept aside")??;
            Source::Direct(buffer)
        }
        None => source(settings, &query).await?,
    };
    match &from {
        Some(dir) => eprintln!(
            "buffer export from the database kept aside at {}",
            dir.display()
        ),
        None => say_source("buffer export", &source, &settings.buffer.path),
    }
    let mut out = open_output(output)?;
    let (records, warnings) = match source {
        Source::Gateway(addr, response) => from_gateway(addr, response, &mut out).await?,
        Source::Direct(buffer) => {
            let written = tokio::task::spawn_blocking(move || {
                let mut failed: Option<io::Error> = None;
                let mut warnings = 0u64;
                let summary = export::run(&buffer, limit, |item| {
                    let result = match item {
                        export::Item::Records(lines) => out.write_all(&lines),
                        export::Item::Skipped(text) => {
                            eprintln!("warning: {text}");
                            warnings += 1;
                            Ok(())
                        }
                    };
                    result.map_err(|e| failed = Some(e)).is_ok()
                });
                (summary, warnings, failed, out)
            })
            .await
            .context("reading the buffer")?;
            let (summary, warnings, failed, returned) = written;
            out = returned;
            if let Some(e) = failed {
                return Err(e).context("writing the export");
            }
            (summary.context("reading the buffer")?.records, warnings)
        }
    };
    out.flush().context("writing the export")?;
    eprintln!(
        "exported {records} record(s){}",
        if warnings > 0 {
            format!(" with {warnings} warning(s) above")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Copies the gateway's export lines to `out`: records as they are, warnings to stderr; an
/// error line, or an answer cut short (no end line, or one that counts other than we got),
/// fails the export.
async fn from_gateway(
    addr: SocketAddr,
    mut response: client::Response,
    out: &mut Box<dyn Write + Send>,
) -> anyhow::Result<(u64, u64)> {
    let (mut records, mut warnings) = (0u64, 0u64);
    let mut ended = false;
    while let Some(line) = response
        .read_line(MAX_LINE_BYTES)
        .await
        .with_context(|| format!("reading /buffer/export from {addr}"))?
    {
        if ended {
            bail!(
                "the gateway at {addr} sent more after the export's end line: {}",
                String::from_utf8_lossy(&line)
            );
        }
        if line.starts_with(b"{\"seq\":") {
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .context("writing the export")?;
            records += 1;
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&line).with_context(|| {
            format!(
                "the gateway at {addr} sent a line this tool cannot read: {}",
                String::from_utf8_lossy(&line)
            )
        })?;
        if let Some(text) = value.get("warning").and_then(|v| v.as_str()) {
            eprintln!("warning: {text}");
            warnings += 1;
        } else if let Some(text) = value.get("error").and_then(|v| v.as_str()) {
            bail!("the gateway at {addr} stopped the export after {records} record(s): {text}");
        } else if let Some(end) = value.get("end") {
            let counted = end.get("records").and_then(|v| v.as_u64());
            if counted != Some(records) {
                bail!(
                    "the gateway at {addr} ended the export counting {end} but {records} \
                     record line(s) arrived; the export is incomplete"
                );
            }
            ended = true;
        } else {
            bail!("the gateway at {addr} sent an unexpected line: {value}");
        }
    }
    if !ended {
        bail!(
            "the answer from the gateway at {addr} stopped after {records} record(s) without \
             the export's end line; the export is incomplete (see the gateway's log)"
        );
    }
    Ok((records, warnings))
}

fn open_output(output: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if output == Path::new("-") {
        return Ok(Box::new(BufWriter::new(io::stdout())));
    }
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    Ok(Box::new(BufWriter::new(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What `fleetedge buffer export` makes of an export answer with this body.
    async fn export_of(body: String) -> anyhow::Result<(u64, u64)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await?;
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await?;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await?;
            socket.shutdown().await
        });
        let response = client::get(addr, "/buffer/export", None)
            .await?
            .ok_or_else(|| anyhow!("nothing listens"))?;
        let mut out: Box<dyn Write + Send> = Box::new(io::sink());
        let result = from_gateway(addr, response, &mut out).await;
        server.await??;
        result
    }

    #[tokio::test]
    async fn an_export_counts_as_complete_only_with_a_matching_end_line() {
        const RECORDS: &str = "{\"seq\":1,\"device_id\":\"a\"}\n{\"seq\":2,\"device_id\":\"a\"}\n";
        let whole = format!(
            "{RECORDS}{{\"warning\":\"w\"}}\n{{\"end\":{{\"records\":2,\"skipped_chunks\":1}}}}\n"
        );
        assert_eq!(export_of(whole).await.expect("a complete export"), (2, 1));

        let err = export_of(RECORDS.to_string())
            .await
            .expect_err("no end line")
            .to_string();
        assert!(
            err.contains("after 2 record(s) without the export's end line"),
            "{err}"
        );

        let short = format!("{RECORDS}{{\"end\":{{\"records\":3}}}}\n");
        let err = export_of(short)
            .await
            .expect_err("a count that differs")
            .to_string();
        assert!(err.contains("but 2 record line(s) arrived"), "{err}");

        let more = format!("{{\"end\":{{\"records\":0}}}}\n{RECORDS}");
        let err = export_of(more)
            .await
            .expect_err("lines after the end")
            .to_string();
        assert!(err.contains("after the export's end line"), "{err}");
    }

    #[test]
    fn the_owner_may_open_the_buffer_and_another_user_is_refused_naming_both() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = std::fs::metadata(dir.path()).expect("metadata").uid();
        assert_eq!(effective_uid(), Some(mine), "we own what we create");
        refuse_foreign_owner(dir.path()).expect("the owner may open it");

        // Giving the directory away needs root (CI runs as root); elsewhere only the
        // owner's case above is checked.
        if std::os::unix::fs::chown(dir.path(), Some(4242), None).is_ok() {
            let err = refuse_foreign_owner(dir.path())
                .expect_err("another user's buffer must be refused")
                .to_string();
            assert!(err.contains("belongs to uid 4242"), "{err}");
            assert!(err.contains(&format!("runs as uid {mine}")), "{err}");
            assert!(err.contains("sudo -u fleetedge"), "{err}");
        }
    }
}
