//! The `fleetedge` command line. Parsing only; the work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetedge::config::Settings;

#[derive(Parser)]
#[command(
    name = "fleetedge",
    version,
    about = "Edge gateway agent for telematics hardware"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: listen for devices, store, forward to MQTT.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Load and validate a config file; print every problem with its key.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Decode a hex capture (or a file) with the gateway's own decoder; one JSON line a frame.
    Decode {
        /// A protocol from the registry (teltonika, teltonika-udp, gt06, queclink, wialon,
        /// wialon-udp, nmea, jsonl). A capture may start mid-connection (no login).
        #[arg(long, short)]
        protocol: String,
        /// Device id for protocols whose frames carry none (nmea).
        #[arg(long)]
        device_id: Option<String>,
        /// Capture file; `-` or nothing reads standard input.
        input: Option<PathBuf>,
    },
    /// Simulated devices against a gateway, for site checks and load tests.
    Simulate(fleetedge::simulate::SimulateArgs),
    /// Send a command to a connected (or queued for a disconnected) device through the
    /// running gateway's HTTP endpoint, printing each status until it is settled.
    #[command(name = "command")]
    Downlink(fleetedge::commands::cli::CommandArgs),
    /// Inspect the durable buffer: `stats` or `export`. Asks the running gateway over
    /// http.bind, or reads buffer.path directly when the gateway is stopped.
    Buffer {
        #[command(subcommand)]
        command: fleetedge::inspect::BufferCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let settings = match Settings::load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            fleetedge::logging::init(&settings.log);
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(fleetedge::gateway::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("fleetedge: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match Settings::load(&config) {
            Ok(s) => {
                println!(
                    "{}: OK (gateway {}, {} listener(s), broker {}:{})",
                    config.display(),
                    s.gateway_id,
                    s.listeners.len(),
                    s.mqtt.host,
                    s.mqtt.port
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Decode {
            protocol,
            device_id,
            input,
        } => {
            let mut stdout = std::io::stdout();
            match fleetedge::decode::run(
                &protocol,
                device_id.as_deref(),
                input.as_deref(),
                &mut stdout,
            ) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("fleetedge decode: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Simulate(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(fleetedge::simulate::run(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("fleetedge simulate: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Buffer { command } => fleetedge::inspect::run(command),
        Command::Downlink(args) => fleetedge::commands::cli::run(args),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            None
        }
    }
}
