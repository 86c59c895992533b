//! `citypass`: the operator's and developer's command line.
//!
//! `main` only parses arguments and dispatches; each command lives in its own module
//! under `commands/`.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "citypass",
    version,
    about = "One code for the whole city",
    after_help = "Exit status: 0 success (ALLOW), 1 DENY, 2 a usage or system error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole code life cycle in one process, with nothing installed.
    Demo {
        /// Also write cp1.txt, cp2.txt, cp1.png, cp2.png and keyset.jwks.json here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every service in one process on embedded stores, with a demo code.
    Dev {
        /// Folder of the dev key ring and PKI (created on first run).
        #[arg(long, default_value = "keys/dev")]
        keys_dir: PathBuf,
        /// Port of the identity service (0: any free port).
        #[arg(long, default_value_t = commands::dev::IDENTITY_PORT)]
        identity_port: u16,
        /// Port of the issuer (0: any free port).
        #[arg(long, default_value_t = commands::dev::ISSUER_PORT)]
        issuer_port: u16,
        /// Port of the revocation service (0: any free port).
        #[arg(long, default_value_t = commands::dev::REVOCATION_PORT)]
        revocation_port: u16,
        /// Port of the verifier (0: any free port).
        #[arg(long, default_value_t = commands::dev::VERIFIER_PORT)]
        verifier_port: u16,
        /// Port of the payments service (0: any free port).
        #[arg(long, default_value_t = commands::dev::PAYMENTS_PORT)]
        payments_port: u16,
        /// Do not enrol a demo citizen and show their code.
        #[arg(long)]
        no_demo: bool,
        /// Serve every service's metrics for Prometheus on this address
        /// (`GET /metrics`, plain HTTP), e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Act as a citizen's app against a running system.
    App(commands::app::AppArgs),
    /// Operators' revocations: revoke, reinstate, list, snapshot.
    Admin(commands::admin::AdminArgs),
    /// A face counter: enrol or withdraw a citizen's face in person.
    Counter(commands::counter::CounterArgs),
    /// Inspect or verify codes.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// A gate scanner: scan a code at a running verifier with a gate's certificate.
    #[command(subcommand)]
    Gate(commands::gate::GateCommand),
    /// Generate and rotate issuer keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// A private CA: service, gate and operator certificates.
    #[command(subcommand)]
    Pki(commands::pki::PkiCommand),
    /// Print a shell completion script (e.g. `citypass completions bash > /etc/bash_completion.d/citypass`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Exit status of a usage or system error (a missing file, a service that cannot be
/// reached, a service of `citypass dev` that died): scripts tell it from a DENY (1).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // Before any runtime starts threads: the local offset can only be read then.
    commands::clock::init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Demo { out } => done(commands::demo::run(out.as_deref())),
        Command::Dev {
            keys_dir,
            identity_port,
            issuer_port,
            revocation_port,
            verifier_port,
            payments_port,
            no_demo,
            metrics_listen,
        } => done(commands::dev::run(commands::dev::DevArgs {
            keys_dir,
            identity_port,
            issuer_port,
            revocation_port,
            verifier_port,
            payments_port,
            demo: !no_demo,
            metrics_listen,
        })),
        Command::App(args) => done(commands::app::run(args)),
        Command::Admin(args) => done(commands::admin::run(args)),
        Command::Counter(args) => done(commands::counter::run(args)),
        Command::Token(cmd) => commands::token::run(cmd),
        Command::Gate(cmd) => commands::gate::run(cmd),
        Command::Keys(cmd) => done(commands::keys::run(cmd)),
        Command::Pki(cmd) => done(commands::pki::run(cmd)),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "citypass", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every argument of every subcommand says what it is for.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "citypass", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
