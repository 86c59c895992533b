//! A service's schema migrations, embedded in its binary, applied at start-up.
//!
//! sqlx's `migrate!` macro would embed the folder by itself, but it needs sqlx's
//! `macros` feature, whose proc-macro links a second build of sqlx-postgres, rustls and
//! tokio for the compiler's host: about three minutes of a fresh build's CPU on two
//! cores (`cargo build --timings`), to save writing down a handful of file names. So a
//! service lists its files with [`embed_migrations!`] (`include_str!` each), a test
//! checks the list against the folder ([`Embedded::check_folder`]), and
//! [`Embedded`] hands them to sqlx's `Migrator` as a `MigrationSource`, parsed as sqlx
//! parses a folder: `<version>_<description>.sql`, the description with `_` as spaces,
//! and the same checksum (SHA-384 of the text, computed by `Migration::new`).

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgPool;

/// A service's migrations: `(file name, SQL)` in version order.
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [(&'static str, &'static str)]);

/// Lists a service's migrations from its `migrations/` folder, each file embedded with
/// `include_str!`: `embed_migrations!["20261201000001_identity.sql", …]`.
#[macro_export]
macro_rules! embed_migrations {
    [$($file:literal),* $(,)?] => {
        $crate::Embedded(&[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
        )),*])
    };
}

impl Embedded {
    /// The migrations as sqlx runs them. A file name not of the form
    /// `<version>_<description>.sql` is an error.
    pub fn migrations(&self) -> Result<Vec<Migration>, String> {
        self.0
            .iter()
            .map(|(name, sql)| {
                let stem = name
                    .strip_suffix(".sql")
                    .ok_or_else(|| format!("{name}: not a .sql file"))?;
                let (version, description) = stem
                    .split_once('_')
                    .ok_or_else(|| format!("{name}: no <version>_<description>"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|_| format!("{name}: the version is not a number"))?;
                Ok(Migration::new(
                    version,
                    Cow::Owned(description.replace('_', " ")),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    sql.starts_with("-- no-transaction"),
                ))
            })
            .collect()
    }

    /// Whether the list names exactly the `.sql` files of `folder`; `Err` names the
    /// files missing from the list or from the folder.
    pub fn check_folder(&self, folder: &Path) -> Result<(), String> {
        let mut on_disk: Vec<String> = std::fs::read_dir(folder)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = self.0.iter().map(|(name, _)| (*name).to_owned()).collect();
        if on_disk == listed {
            Ok(())
        } else {
            Err(format!(
                "migrations listed {listed:?}, in {}: {on_disk:?}",
                folder.display()
            ))
        }
    }
}

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move { self.migrations().map_err(BoxDynError::from) })
    }
}

/// Applies a service's `migrations`. Migrations of other services sharing the database
/// are tolerated, though a database of its own is the plan.
pub async fn migrate(
    pool: &PgPool,
    migrations: Embedded,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = Migrator::new(migrations).await?;
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_version_and_description_as_sqlx_reads_them() {
        let embedded = Embedded(&[
            ("20261201000001_first_schema.sql", "CREATE TABLE a (x INT);"),
            (
                "20261202000002_more.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON a (x);",
            ),
        ]);
        let migrations = embedded.migrations().unwrap();
        assert_eq!(migrations[0].version, 20261201000001);
        assert_eq!(migrations[0].description, "first schema");
        assert!(!migrations[0].no_tx);
        assert!(migrations[1].no_tx);
        // The checksum sqlx stores and compares: SHA-384 of the text.
        assert_eq!(migrations[0].checksum.len(), 48);
        const BAD: [&[(&str, &str)]; 3] = [
            &[("x_y.sql", "")],
            &[("20261201000001.sql", "")],
            &[("20261201000001_a.txt", "")],
        ];
        for bad in BAD {
            assert!(Embedded(bad).migrations().is_err(), "{}", bad[0].0);
        }
    }
}
