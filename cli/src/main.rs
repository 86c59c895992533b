//! `citypass`: the operator's and developer's command line.
//!
//! `main` only parses arguments and dispatches; each command lives in its own module
//! under `commands/`.

mod commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "citypass", version, about = "One code for the whole city")]
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
        #[arg(long, default_value_t = commands::dev::IDENTITY_PORT)]
        identity_port: u16,
        #[arg(long, default_value_t = commands::dev::ISSUER_PORT)]
        issuer_port: u16,
        #[arg(long, default_value_t = commands::dev::REVOCATION_PORT)]
        revocation_port: u16,
        /// Do not enrol a demo citizen and show their code.
        #[arg(long)]
        no_demo: bool,
    },
    /// Act as a citizen's app against a running system.
    App(commands::app::AppArgs),
    /// Operators' revocations: revoke, reinstate, list, snapshot.
    Admin(commands::admin::AdminArgs),
    /// Inspect or verify codes.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Generate and rotate issuer keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// A private CA: service, gate and operator certificates.
    #[command(subcommand)]
    Pki(commands::pki::PkiCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { out } => commands::demo::run(out.as_deref()),
        Command::Dev {
            keys_dir,
            identity_port,
            issuer_port,
            revocation_port,
            no_demo,
        } => commands::dev::run(commands::dev::DevArgs {
            keys_dir,
            identity_port,
            issuer_port,
            revocation_port,
            demo: !no_demo,
        }),
        Command::App(args) => commands::app::run(args),
        Command::Admin(args) => commands::admin::run(args),
        Command::Token(cmd) => commands::token::run(cmd),
        Command::Keys(cmd) => commands::keys::run(cmd),
        Command::Pki(cmd) => commands::pki::run(cmd),
    }
}
