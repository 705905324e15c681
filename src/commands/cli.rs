//! `fleetedge command`: an installer on site sends one command through the running
//! gateway's HTTP endpoint (`POST /commands`, then `GET /commands/{id}` until the command is
//! settled or `--wait-s` passes), printing each status as it changes. The command goes
//! through the same durable queue as the cloud's, and its results are published on MQTT too.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::message::{CommandResult, Status};
use crate::config::Settings;
use crate::inspect::client;

#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The device id (IMEI) as the gateway knows it.
    #[arg(long)]
    pub device: String,
    /// The command as the device's firmware reads it (e.g. `getinfo`).
    #[arg(long, conflicts_with = "raw_hex", required_unless_present = "raw_hex")]
    pub text: Option<String>,
    /// Bytes written to the device as they are, in hex (for experts).
    #[arg(long)]
    pub raw_hex: Option<String>,
    /// The command's id (default: one made by the gateway).
    #[arg(long)]
    pub id: Option<String>,
    /// Seconds the command may wait for the device (default: commands.default_ttl_s).
    #[arg(long)]
    pub ttl_s: Option<u64>,
    /// Seconds to wait for the command to be settled (answered, failed, expired); 0 =
    /// print the first status only.
    #[arg(long, default_value_t = 30)]
    pub wait_s: u64,
}

/// Exit 0 when the device answered (or, with `--wait-s 0`, when the command was taken), 1
/// when it failed, expired, was rejected or the wait ended first, 2 on a usage problem.
pub fn run(args: CommandArgs) -> ExitCode {
    let settings = match Settings::load(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetedge command: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(send(&settings, &args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fleetedge command: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(r: &CommandResult) {
    let mut line = format!(
        "{} {} {}",
        r.at,
        r.id.as_deref().unwrap_or("-"),
        r.status.as_str()
    );
    if let Some(answer) = &r.answer {
        line.push_str(&format!(" answer={answer:?}"));
    }
    if let Some(reason) = &r.reason {
        line.push_str(&format!(" reason={reason:?}"));
    }
    println!("{line}");
}

async fn read_result(mut response: client::Response) -> anyhow::Result<CommandResult> {
    let status = response.status;
    let text = response.text(64 * 1024).await?;
    if status != 200 {
        return Err(anyhow!("the gateway answered {status}: {}", text.trim()));
    }
    serde_json::from_str(&text).with_context(|| format!("reading the gateway's answer {text:?}"))
}

async fn send(settings: &Settings, args: &CommandArgs) -> anyhow::Result<bool> {
    let bind = settings
        .http
        .addr()
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("http.bind is empty: the gateway has no endpoint to ask"))?;
    let addr = client::connect_addr(bind);
    let token = settings.http.token().map_err(|e| anyhow!(e))?;
    let mut command = serde_json::json!({ "device_id": args.device });
    if let Some(id) = &args.id {
        command["id"] = id.clone().into();
    }
    match (&args.text, &args.raw_hex) {
        (Some(text), _) => command["text"] = text.clone().into(),
        (None, Some(hex)) => command["raw_hex"] = hex.clone().into(),
        (None, None) => return Err(anyhow!("--text or --raw-hex is required")),
    }
    if let Some(ttl) = args.ttl_s {
        command["ttl_s"] = ttl.into();
    }
    let body = bytes::Bytes::from(serde_json::to_vec(&command)?);
    let response = client::post_json(addr, "/commands", token.as_ref(), body)
        .await?
        .ok_or_else(|| anyhow!("nothing listens on {addr} (http.bind): is the gateway running?"))?;
    let mut last = read_result(response).await?;
    print(&last);
    let Some(id) = last.id.clone() else {
        return Ok(false);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait_s);
    while !last.status.is_final() {
        if args.wait_s == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            println!("no final status within --wait-s {}", args.wait_s);
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let path = format!("/commands/{id}");
        let response = client::get(addr, &path, token.as_ref())
            .await?
            .ok_or_else(|| anyhow!("the gateway stopped answering on {addr}"))?;
        let now = read_result(response).await?;
        if now.status != last.status {
            print(&now);
        }
        last = now;
    }
    Ok(last.status == Status::Answered)
}
