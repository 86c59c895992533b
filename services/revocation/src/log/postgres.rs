//! The PostgreSQL log: the system of record in deployments.
//!
//! Queries are checked at run time (`sqlx::query` + `bind`, no `query!` macros), so
//! building needs no database. The schema lives in `migrations/` and is applied at
//! start-up ([`PostgresLog::new`]); sqlx takes an advisory lock, so replicas starting
//! together migrate once.
//!
//! # Epochs
//!
//! The head of the log is one row (`revocation_head`). Every write begins by locking it
//! (`SELECT … FOR UPDATE`), reads the target's history, appends its rows with epochs
//! `head + 1 ..`, moves the head and commits. So, across any number of replicas:
//!
//! - writes are serial, and the rules (idempotency, cascade, reinstatement) see every
//!   earlier write;
//! - epochs are gapless: a write that rolls back (or whose connection dies) never moved
//!   the head, and the next writer reuses its epochs;
//! - epochs become visible in order: epoch N+1 is assigned only after the transaction
//!   that wrote N has ended (the lock is released after the commit is visible), so a
//!   reader's snapshot always holds a prefix of the log and never sees N+1 without N.
//!
//! A sequence would not do: it hands out numbers to concurrent transactions that may
//! commit in the other order (a reader at that moment sees N+1 without N and, having
//! moved past N, would never read it) and it leaves holes on rollback. An advisory lock
//! plus `max(epoch) + 1` would work too; the head row does the same with an ordinary
//! row lock, keeps the head readable in O(1), and needs no lock id convention.
//!
//! Revocations are rare (operators, arrears, lost phones): serial writes, each one
//! round trip to the lock plus the commit, are far from a limit.
//!
//! # The chain
//!
//! Each row holds its chain hash (`chain`, see `citypass_revocation::chain`), and the
//! head row the chain hash through the head epoch. Both are written under the head
//! row's lock, by the same transaction that appends, so they can never disagree with
//! the rows: a writer reads the head's chain, chains its records onto it and moves the
//! head to the last one's. Rows written before the chain existed were chained by the
//! migration that added it (`20261202000001_revocation_chain.sql`, in SQL, over the
//! same encoding); every reader (this replica's tail) checks each row's chain hash as
//! it applies it and refuses a log that does not chain.

use std::collections::HashMap;

use citypass_revocation::{
    Action, ChainHash, Entry, Head, Reason, ReinstateReason, RevocationReason, Target, TargetKind,
};
use citypass_token::CertSerial;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use futures::future::BoxFuture;

use super::Log;
use crate::error::Error;
use crate::model::{Audit, Cascade, Page, Record, RevokeCommand, Revoked};
use crate::plan::{plan_cascade, plan_reinstate, plan_revoke};

/// The schema, in version order: every file of `migrations/` (a test checks the list
/// against the folder).
pub const MIGRATIONS: citypass_postgres::Embedded = citypass_postgres::embed_migrations![
    "20261201000001_revocation.sql",
    "20261202000001_revocation_chain.sql",
    "20261202000003_revocation_chain_v3.sql",
];

const COLUMNS: &str = "epoch, action, target_kind, target_id, reason, revoked_before, \
    expires_at, created_at, actor, note, chain";

/// The PostgreSQL log. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresLog {
    pool: PgPool,
}

impl PostgresLog {
    /// Connects to `url` with up to `max_connections` and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        Self::new(citypass_postgres::connect(url, max_connections).await?).await
    }

    /// Uses an existing pool and applies the migrations (the schema is embedded at
    /// compile time).
    pub async fn new(pool: PgPool) -> Result<Self, Error> {
        citypass_postgres::migrate(&pool, MIGRATIONS).await?;
        Ok(PostgresLog { pool })
    }

    /// The connection pool (for health checks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

// --- values ----------------------------------------------------------------------------

fn to_db(value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::invalid("time", "out of range"))
}

fn from_db(value: i64, column: &'static str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(column))
}

fn record_from(row: &PgRow) -> Result<Record, Error> {
    let kind: i16 = row.try_get("target_kind")?;
    let kind = TargetKind::from_code(i32::from(kind)).ok_or(Error::Corrupt("target_kind"))?;
    let id: String = row.try_get("target_id")?;
    let target = Target::parse(kind, &id).map_err(|_| Error::Corrupt("target_id"))?;
    let reason: i16 = row.try_get("reason")?;
    let action: i16 = row.try_get("action")?;
    let revoked_before: Option<i64> = row.try_get("revoked_before")?;
    let (action, reason) = match (action, revoked_before) {
        (1, Some(rb)) => {
            let reason =
                RevocationReason::from_code(i32::from(reason)).ok_or(Error::Corrupt("reason"))?;
            let action = Action::Revoke {
                compromised: reason.compromised(),
                revoked_before: from_db(rb, "revoked_before")?,
            };
            (action, Reason::Revoke(reason))
        }
        (2, None) => {
            let reason =
                ReinstateReason::from_code(i32::from(reason)).ok_or(Error::Corrupt("reason"))?;
            (Action::Reinstate, Reason::Reinstate(reason))
        }
        _ => return Err(Error::Corrupt("action")),
    };
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    let entry = Entry {
        epoch: from_db(row.try_get("epoch")?, "epoch")?,
        target,
        action,
        expires_at: expires_at.map(|t| from_db(t, "expires_at")).transpose()?,
        created_at: from_db(row.try_get("created_at")?, "created_at")?,
    };
    entry.validate().map_err(|_| Error::Corrupt("entry"))?;
    let chain: Vec<u8> = row.try_get("chain")?;
    Ok(Record {
        entry,
        chain: ChainHash::from_slice(&chain).ok_or(Error::Corrupt("chain"))?,
        reason,
        actor: row.try_get("actor")?,
        note: row.try_get("note")?,
    })
}

// --- statements shared by the writes ---------------------------------------------------

/// The head row as a [`Head`].
fn head_from(row: &PgRow) -> Result<Head, Error> {
    let chain: Vec<u8> = row.try_get("chain")?;
    Ok(Head {
        epoch: from_db(row.try_get("epoch")?, "revocation_head.epoch")?,
        chain: ChainHash::from_slice(&chain).ok_or(Error::Corrupt("revocation_head.chain"))?,
    })
}

/// Locks the head row until the transaction ends; returns the head.
async fn lock_head(conn: &mut PgConnection) -> Result<Head, Error> {
    let row = sqlx::query("SELECT epoch, chain FROM revocation_head FOR UPDATE")
        .fetch_one(conn)
        .await?;
    head_from(&row)
}

/// The head, without a lock.
async fn read_head(pool: &PgPool) -> Result<Head, Error> {
    let row = sqlx::query("SELECT epoch, chain FROM revocation_head")
        .fetch_one(pool)
        .await?;
    head_from(&row)
}

async fn history(conn: &mut PgConnection, target: &Target) -> Result<Vec<Record>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM revocation_log WHERE target_kind = $1 AND target_id = $2 \
         ORDER BY epoch"
    );
    let rows = sqlx::query(&sql)
        .bind(i16::from(target.kind().code()))
        .bind(target.id())
        .fetch_all(conn)
        .await?;
    rows.iter().map(record_from).collect()
}

async fn certificate_history(
    conn: &mut PgConnection,
    cascade: Cascade<'_>,
) -> Result<HashMap<CertSerial, Vec<Record>>, Error> {
    let mut out: HashMap<CertSerial, Vec<Record>> = HashMap::new();
    if cascade.certificates.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = cascade
        .certificates
        .iter()
        .map(|c| Target::Certificate(c.serial).id())
        .collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM revocation_log WHERE target_kind = $1 AND target_id = ANY($2) \
         ORDER BY epoch"
    );
    let rows = sqlx::query(&sql)
        .bind(i16::from(TargetKind::Certificate.code()))
        .bind(&ids)
        .fetch_all(conn)
        .await?;
    for row in &rows {
        let record = record_from(row)?;
        if let Target::Certificate(serial) = record.entry.target {
            out.entry(serial).or_default().push(record);
        }
    }
    Ok(out)
}

/// Appends `records` (epochs `head + 1 ..`, chained onto the head) and moves the head
/// to the last one.
async fn append(conn: &mut PgConnection, records: &[Record]) -> Result<(), Error> {
    let Some(last) = records.last() else {
        return Ok(());
    };
    for record in records {
        let entry = &record.entry;
        sqlx::query(
            "INSERT INTO revocation_log (epoch, action, target_kind, target_id, reason, \
                 revoked_before, expires_at, created_at, actor, note, chain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(to_db(entry.epoch)?)
        .bind(i16::from(entry.action.code()))
        .bind(i16::from(entry.target.kind().code()))
        .bind(entry.target.id())
        .bind(i16::from(record.reason.code()))
        .bind(entry.revoked_before().map(to_db).transpose()?)
        .bind(entry.expires_at.map(to_db).transpose()?)
        .bind(to_db(entry.created_at)?)
        .bind(&record.actor)
        .bind(&record.note)
        .bind(record.chain.as_bytes().as_slice())
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE revocation_head SET epoch = $1, chain = $2")
        .bind(to_db(last.entry.epoch)?)
        .bind(last.chain.as_bytes().as_slice())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Log for PostgresLog {
    fn revoke<'a>(
        &'a self,
        command: &'a RevokeCommand,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Revoked, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let head = lock_head(&mut tx).await?;
            let history = history(&mut tx, &command.target).await?;
            let certificates = certificate_history(&mut tx, cascade).await?;
            let plan = plan_revoke(command, &history, cascade, &certificates, head, now);
            append(&mut tx, &plan.writes).await?;
            tx.commit().await?;
            Ok(plan.revoked)
        })
    }

    fn cascade<'a>(
        &'a self,
        parent: &'a Record,
        cascade: Cascade<'a>,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Record>, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let head = lock_head(&mut tx).await?;
            let history = history(&mut tx, &parent.entry.target).await?;
            let certificates = certificate_history(&mut tx, cascade).await?;
            let writes = plan_cascade(parent, &history, cascade, &certificates, head, now);
            append(&mut tx, &writes).await?;
            tx.commit().await?;
            Ok(writes)
        })
    }

    fn reinstate<'a>(
        &'a self,
        target: &'a Target,
        reason: ReinstateReason,
        audit: &'a Audit,
        now: u64,
    ) -> BoxFuture<'a, Result<Record, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let head = lock_head(&mut tx).await?;
            let history = history(&mut tx, target).await?;
            let record = plan_reinstate(target, reason, audit, &history, head, now)?;
            append(&mut tx, std::slice::from_ref(&record)).await?;
            tx.commit().await?;
            Ok(record)
        })
    }

    fn list(&self, since: u64, limit: usize) -> BoxFuture<'_, Result<Page, Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM revocation_log WHERE epoch > $1 ORDER BY epoch LIMIT $2"
            );
            // `since` beyond i64 is beyond any head: answered below from the head.
            let from = i64::try_from(since).unwrap_or(i64::MAX);
            let rows = sqlx::query(&sql)
                .bind(from)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            let records = rows
                .iter()
                .map(record_from)
                .collect::<Result<Vec<_>, _>>()?;
            // Read after the rows: the head can only have moved on, never back, so the
            // page is a prefix of the log up to at least this head.
            let Head {
                epoch: head,
                chain: head_chain,
            } = read_head(&self.pool).await?;
            if since > head {
                return Err(Error::EpochBeyondHead { epoch: since, head });
            }
            for (i, record) in records.iter().enumerate() {
                if record.entry.epoch != since + 1 + i as u64 {
                    return Err(Error::Corrupt("the log has a gap"));
                }
            }
            if records.last().is_some_and(|r| r.entry.epoch > head) {
                return Err(Error::Corrupt("the log is beyond its head"));
            }
            Ok(Page {
                records,
                head,
                head_chain,
            })
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { Ok(read_head(&self.pool).await?.epoch) })
    }
}

#[cfg(test)]
mod migration_list {
    #[test]
    fn every_file_of_the_folder_is_listed() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        super::MIGRATIONS.check_folder(&folder).unwrap();
    }
}
