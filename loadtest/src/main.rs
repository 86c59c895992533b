//! The `citypass-loadtest` command: arguments in, a report out (table on stdout, JSON
//! with `--json`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use citypass_loadtest::{Mix, Settings, TargetSpec};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "citypass-loadtest",
    about = "Load citypass services and report how they hold up"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop Verify load from the sample gates, then the same against a bare
    /// verify server (the ceiling).
    Verify {
        /// Requests per second, sent on schedule whatever the answers do.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// How long to offer the load (`10s`, `1m`; at most 4m).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Shares of each kind of code: fresh, replayed, expired, forged, garbled.
        #[arg(
            long,
            default_value = "fresh=80,replayed=5,expired=5,forged=5,garbled=5"
        )]
        mix: Mix,
        /// Requests in flight at most (reaching it is reported).
        #[arg(long, default_value_t = 2048)]
        in_flight_cap: usize,
        /// A running verifier (`citypass dev`'s is https://127.0.0.1:50053); without
        /// it the dev stack is started in this process.
        #[arg(long, requires = "keys_dir")]
        target: Option<String>,
        /// The running stack's keys directory (key ring, gate registry, dev PKI).
        #[arg(long, requires = "target")]
        keys_dir: Option<PathBuf>,
        /// Skip the bare verify server.
        #[arg(long)]
        no_ceiling: bool,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    citypass_runtime::config::duration::parse(text).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<ExitCode> {
    let Command::Verify {
        rate,
        duration,
        mix,
        in_flight_cap,
        target,
        keys_dir,
        no_ceiling,
        json,
    } = Cli::parse().command;
    let target = match (target, keys_dir) {
        (Some(url), Some(keys_dir)) => TargetSpec::Running { url, keys_dir },
        _ => TargetSpec::InProcess,
    };
    let settings = Settings {
        target,
        rate,
        duration,
        mix,
        in_flight_cap,
        ceiling: !no_ceiling,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(citypass_loadtest::verify(settings))?;
    println!("{report}");
    if let Some(path) = json {
        report.write_json(&path)?;
        println!("report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
