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
    /// Inspect or verify codes.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Generate and rotate issuer keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { out } => commands::demo::run(out.as_deref()),
        Command::Token(cmd) => commands::token::run(cmd),
        Command::Keys(cmd) => commands::keys::run(cmd),
    }
}
