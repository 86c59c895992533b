//! `citypass pki ...`: a private CA and its certificates, for development and for
//! deployments without cert-manager.
//!
//! `init` makes the CA; `issue` certifies a service or a gate (a directory with
//! `ca.crt`, `tls.crt`, `tls.key`, the layout of a cert-manager Secret); `operator`
//! makes an operator's short-lived credential (one PEM file: certificate with roles,
//! key, CA) for `citypass admin --credential`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use citypass_pki::{Authority, CA_LIFE, OPERATOR_LIFE, OPERATOR_MAX_LIFE, Subject, write_file};
use citypass_runtime::Role;
use clap::{Subcommand, ValueEnum};

use super::clock;

/// Where `citypass dev` keeps its PKI, and so the default here.
pub const DEV_PKI_DIR: &str = "keys/dev/pki";

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Make a new CA (ca.crt, ca.key) in the PKI directory.
    Init {
        /// The PKI directory.
        #[arg(long, default_value = DEV_PKI_DIR)]
        dir: PathBuf,
        /// Replace an existing CA (every certificate it issued stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Certify a service or a gate: writes ca.crt, tls.crt, tls.key into a directory.
    Issue {
        /// What to certify.
        #[arg(value_enum)]
        kind: IdentityKind,
        /// The service name (identity, issuer, revocation, verifier, payments) or gate id.
        name: String,
        /// The PKI directory holding the CA.
        #[arg(long, default_value = DEV_PKI_DIR)]
        dir: PathBuf,
        /// Where to write the files (default: <dir>/<kind>-<name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make an operator's short-lived credential with roles.
    Operator {
        /// The operator's name (recorded as the actor of their actions).
        name: String,
        /// A role to grant; repeat for several.
        #[arg(long = "role", value_enum, required = true)]
        roles: Vec<RoleArg>,
        /// Hours of validity (at most 24).
        #[arg(long, default_value_t = OPERATOR_LIFE.as_secs() / 3600)]
        hours: u64,
        /// The PKI directory holding the CA.
        #[arg(long, default_value = DEV_PKI_DIR)]
        dir: PathBuf,
        /// The credential file (default: <dir>/operator-<name>.pem).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What `issue` certifies.
#[derive(Clone, Copy, ValueEnum)]
pub enum IdentityKind {
    /// A citypass service (server and client certificate).
    Service,
    /// A gate scanner (client certificate).
    Gate,
}

/// An operator role.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Revoke and reinstate.
    Revoker,
    /// Change subjects' attributes and status; read subjects and devices.
    IdentityAdmin,
    /// Administer signing keys (revoke a key).
    KeyAdmin,
    /// Read lists and logs.
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Revoker => Role::Revoker,
            RoleArg::IdentityAdmin => Role::IdentityAdmin,
            RoleArg::KeyAdmin => Role::KeyAdmin,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

pub fn run(command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init { dir, force } => {
            if dir.join("ca.key").exists() && !force {
                bail!(
                    "{} already holds a CA (use --force to replace it)",
                    dir.display()
                );
            }
            Authority::generate(CA_LIFE)?.save(&dir)?;
            println!("made a CA in {}", dir.display());
        }
        PkiCommand::Issue {
            kind,
            name,
            dir,
            out,
        } => {
            let ca = load_ca(&dir)?;
            let (subject, prefix) = match kind {
                IdentityKind::Service => (Subject::service(&name), "service"),
                IdentityKind::Gate => (Subject::gate(&name), "gate"),
            };
            let out = out.unwrap_or_else(|| dir.join(format!("{prefix}-{name}")));
            ca.issue(&subject)?.write_dir(&out)?;
            println!(
                "wrote ca.crt, tls.crt, tls.key for {} into {} (valid until {})",
                subject.principal,
                out.display(),
                clock::show_system(subject.not_after)
            );
        }
        PkiCommand::Operator {
            name,
            roles,
            hours,
            dir,
            out,
        } => {
            let life = Duration::from_secs(hours.saturating_mul(3600));
            if life.is_zero() || life > OPERATOR_MAX_LIFE {
                bail!(
                    "--hours must be between 1 and {}",
                    OPERATOR_MAX_LIFE.as_secs() / 3600
                );
            }
            let roles: Vec<Role> = roles.into_iter().map(Role::from).collect();
            let ca = load_ca(&dir)?;
            let subject = Subject::operator(&name, &roles, life);
            let issued = ca.issue(&subject)?;
            let out = out.unwrap_or_else(|| dir.join(format!("operator-{name}.pem")));
            write_file(&out, &issued.bundle(), true)?;
            println!(
                "wrote {} (operator {name}, roles {}, valid {hours} h, until {})",
                out.display(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                clock::show_system(subject.not_after)
            );
        }
    }
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<Authority> {
    Authority::load(dir).with_context(|| {
        format!(
            "no CA in {} (run `citypass pki init --dir {}` first)",
            dir.display(),
            dir.display()
        )
    })
}
