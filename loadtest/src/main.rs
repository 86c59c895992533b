//! The `citypass-loadtest` command: arguments in, a report out (table on stdout, JSON
//! with `--json`, a chart with `--sweep … --chart FILE`). `serve …` (hidden) runs the
//! servers the tool starts as its children.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use citypass_loadtest::{FloorShape, Mix, Settings, Spawn, TargetSpec};
use clap::{Args, Parser, Subcommand};

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
    Verify(Box<VerifyArgs>),
    /// The servers this tool starts as its child processes (used by --spawn).
    #[command(subcommand, hide = true)]
    Serve(Serve),
}

#[derive(Args)]
struct VerifyArgs {
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
    /// With --target: the running stack's identity service, where the riders enrol.
    #[arg(long, default_value = citypass_loadtest::target::DEV_IDENTITY)]
    identity: String,
    /// With --target: the running stack's payments service, where the riders link a
    /// sandbox payment account.
    #[arg(long, default_value = citypass_loadtest::target::DEV_PAYMENTS)]
    payments: String,
    /// With --target: the running stack's revocation service, where --revocations
    /// revokes (as an operator the dev CA in --keys-dir certifies).
    #[arg(long, default_value = citypass_loadtest::target::DEV_REVOCATION)]
    revocation: String,
    /// During the verifier's Verify run, revoke this many extra riders one at a time
    /// and measure how long each takes to be enforced (0: not).
    #[arg(long, default_value_t = 0)]
    revocations: usize,
    /// Riders to enrol, bind and link to a sandbox payment account before the run; the
    /// codes are sealed for them in turn.
    #[arg(long, default_value_t = citypass_loadtest::riders::DEFAULT_RIDERS)]
    riders: usize,
    /// Start the dev stack and the bare server as child processes (so that their
    /// CPU per request, peak memory and time to ready are their own).
    #[arg(long, conflicts_with = "target")]
    spawn: bool,
    /// Start the five services as separate processes, each its own binary from this
    /// directory (`citypass-identity`, …, as cargo builds them), on --postgres and
    /// --redis; every service's CPU, memory and time to ready are reported apart.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["target", "spawn"], requires_all = ["postgres", "redis"])]
    services: Option<PathBuf>,
    /// With --services: a PostgreSQL URL whose user may create databases (one fresh
    /// database per service that has one).
    #[arg(long, requires = "services")]
    postgres: Option<String>,
    /// With --services: the Redis URL (keys under names of the run's own).
    #[arg(long, requires = "services")]
    redis: Option<String>,
    /// With --services: change a service's setting, `SERVICE:CITYPASS_NAME=VALUE`
    /// (repeatable; e.g. `verifier:CITYPASS_SCENES__BUS__DEADLINE=2s`). Without it the
    /// services run the manifests' configuration.
    #[arg(long, requires = "services", value_parser = citypass_loadtest::services::parse_service_env)]
    service_env: Vec<(String, String, String)>,
    /// With --spawn: run `PATH dev` (the citypass binary) as the stack instead of
    /// this tool's own `serve stack`.
    #[arg(long, requires = "spawn", value_name = "PATH")]
    citypass: Option<PathBuf>,
    /// Also run VerifyStream over this many streams (0: not).
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Also run IssueToken from this many citizens' apps, enrolled and bound first
    /// (0: not; needs the in-process stack or --spawn; --duration at most 20s).
    #[arg(long, default_value_t = 0)]
    citizens: usize,
    /// Run at each of these rates (e.g. 500,1000,2000,5000) instead of --rate.
    #[arg(long, value_parser = citypass_loadtest::sweep::parse_rates)]
    sweep: Option<Rates>,
    /// With --sweep: draw p50 and p99 against offered load to this SVG file.
    #[arg(long, requires = "sweep")]
    chart: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Skip the bare verify server.
    #[arg(long)]
    no_ceiling: bool,
    /// Also load the floor (Verify): the bare verify server plus one outbound TapIn
    /// over mutual TLS per verified code to a trivial taps server the tool starts,
    /// what the transit workload cannot avoid. It checks no expiry or replay, so it
    /// taps for those codes too: play a mix without them (e.g.
    /// fresh=90,forged=5,garbled=5) to give it exactly the verifier's calls. Over
    /// VerifyStream too with --streams; with --citizens and --redis, also the sign
    /// floor (the bare sign server plus each proof's nonce marked used on Redis).
    #[arg(long, conflicts_with = "no_ceiling")]
    floor: bool,
    /// With --floor: also this many one-key Redis scripts per verified code on
    /// --redis, the shared-store steps single use needs (4 at a scenic gate: the
    /// scan-id claim, the mark, the venue's count, the settled answer; 3 at a bus
    /// reader). Needs --services.
    #[arg(long, requires = "floor", requires = "services", default_value_t = 0)]
    floor_scripts: u8,
    /// With --floor: no TapIn (a gate whose policy calls nobody, e.g. scenic).
    #[arg(long, requires = "floor")]
    floor_no_tap: bool,
    /// Play this gate of the registry instead of the bus readers (e.g. scenic-gate-1,
    /// whose policy makes no outbound call; one entry a day per rider there, so
    /// give a mix without replayed codes).
    #[arg(long)]
    gate: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

type Rates = Vec<u32>;

#[derive(Subcommand)]
enum Serve {
    /// The dev stack over a prepared keys directory, until standard input closes.
    Stack {
        #[arg(long)]
        keys_dir: PathBuf,
        #[arg(long)]
        verifier_port: u16,
        #[arg(long)]
        identity_port: u16,
        #[arg(long)]
        issuer_port: u16,
        #[arg(long)]
        payments_port: u16,
        #[arg(long)]
        revocation_port: u16,
    },
    /// The bare verify server, until standard input closes.
    BareVerify {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Directory of tls.crt, tls.key and ca.crt.
        #[arg(long)]
        tls_dir: PathBuf,
        /// The issuer's Ed25519 public key, hex.
        #[arg(long)]
        public_key: String,
        /// The floor: one TapIn at this trivial taps server per verified code.
        #[arg(long)]
        tap_url: Option<String>,
        /// The floor: `--scripts` one-key scripts per verified code on the Redis whose
        /// URL this file holds (a file, not an argument: it may hold a password).
        #[arg(long, requires = "scripts")]
        redis_url_file: Option<PathBuf>,
        /// How many (with --redis-url-file).
        #[arg(long, requires = "redis_url_file")]
        scripts: Option<u8>,
    },
    /// The floor's trivial taps server, until standard input closes.
    BareTaps {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Directory of tls.crt, tls.key and ca.crt.
        #[arg(long)]
        tls_dir: PathBuf,
    },
    /// The bare sign server, until standard input closes.
    BareSign {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Directory of tls.crt, tls.key and ca.crt.
        #[arg(long)]
        tls_dir: PathBuf,
        /// Directory of the key ring (keyring.json).
        #[arg(long)]
        keys_dir: PathBuf,
        /// Lines of `<device id> <P-256 public key, hex>`.
        #[arg(long)]
        devices: PathBuf,
        /// The sign floor: each verified proof's nonce marked used on the Redis whose
        /// URL this file holds (a file, not an argument: it may hold a password).
        #[arg(long)]
        redis_url_file: Option<PathBuf>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    citypass_runtime::config::duration::parse(text).map_err(|e| e.to_string())
}

/// The URL in the file at `path`, if any (`--redis-url-file`).
fn read_url(path: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    })
    .transpose()
}

fn serve(command: Serve) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        Serve::Stack {
            keys_dir,
            verifier_port,
            identity_port,
            issuer_port,
            payments_port,
            revocation_port,
        } => {
            let ports = citypass_loadtest::serve::Ports {
                verifier: verifier_port,
                identity: identity_port,
                issuer: issuer_port,
                payments: payments_port,
                revocation: revocation_port,
            };
            runtime.block_on(citypass_loadtest::serve::stack(&keys_dir, ports))?;
        }
        Serve::BareSign {
            listen,
            tls_dir,
            keys_dir,
            devices,
            redis_url_file,
        } => {
            let redis_url = read_url(redis_url_file)?;
            runtime.block_on(citypass_loadtest::serve::bare_sign(
                listen,
                &tls_dir,
                &keys_dir,
                &devices,
                redis_url.as_deref().map(str::trim),
            ))?;
        }
        Serve::BareVerify {
            listen,
            tls_dir,
            public_key,
            tap_url,
            redis_url_file,
            scripts,
        } => {
            let key = hex::decode(&public_key).context("--public-key is not hex")?;
            let redis_url = read_url(redis_url_file)?;
            runtime.block_on(citypass_loadtest::serve::bare_verify(
                listen,
                &tls_dir,
                &key,
                tap_url.as_deref(),
                redis_url.as_deref().map(str::trim).zip(scripts),
            ))?;
        }
        Serve::BareTaps { listen, tls_dir } => {
            runtime.block_on(citypass_loadtest::serve::bare_taps(listen, &tls_dir))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> anyhow::Result<ExitCode> {
    let args = match Cli::parse().command {
        Command::Serve(command) => return serve(command),
        Command::Verify(args) => *args,
    };
    let VerifyArgs {
        rate,
        duration,
        mix,
        in_flight_cap,
        target,
        keys_dir,
        identity,
        payments,
        revocation,
        revocations,
        riders,
        spawn,
        services,
        postgres,
        redis,
        service_env,
        citypass,
        streams,
        citizens,
        sweep,
        chart,
        quiet,
        no_ceiling,
        floor,
        floor_scripts,
        floor_no_tap,
        gate,
        json,
    } = args;
    let floor = floor.then(|| FloorShape {
        tap: !floor_no_tap,
        scripts: floor_scripts,
        redis: redis.clone(),
    });
    let loadtest = std::env::current_exe().context("finding this tool's own binary")?;
    let target = if let Some(bin_dir) = services {
        TargetSpec::Services {
            spec: citypass_loadtest::ServicesSpec {
                bin_dir,
                postgres: postgres.context("--services needs --postgres")?,
                redis: redis.context("--services needs --redis")?,
                env: service_env,
            },
            loadtest,
        }
    } else {
        match (target, keys_dir) {
            (Some(url), Some(keys_dir)) => TargetSpec::Running {
                url,
                keys_dir,
                identity,
                payments,
                revocation,
            },
            _ if spawn => TargetSpec::Spawn(Spawn { loadtest, citypass }),
            _ => TargetSpec::InProcess,
        }
    };
    let settings = Settings {
        target,
        rate,
        duration,
        mix,
        in_flight_cap,
        ceiling: !no_ceiling,
        floor,
        gate,
        streams,
        citizens,
        riders,
        revocations,
        progress: !quiet,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if let Some(rates) = sweep {
        let sweep = runtime.block_on(citypass_loadtest::sweep(&settings, &rates))?;
        println!("{sweep}");
        if let Some(path) = chart {
            let title = "p50 (thin) and p99 (thick) latency against offered load";
            citypass_loadtest::chart::draw(&sweep, title, &path)?;
            println!("chart written to {}", path.display());
        }
        if let Some(path) = json {
            sweep.write_json(&path)?;
            println!("sweep written to {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = runtime.block_on(citypass_loadtest::verify(settings))?;
    println!("{report}");
    if let Some(path) = json {
        report.write_json(&path)?;
        println!("report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
