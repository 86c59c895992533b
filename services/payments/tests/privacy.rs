//! No card number anywhere: after a run of links (one attempted with a card number as
//! its token), taps, voids and arrears over PostgreSQL, no text value in any payments
//! table and no log line (every level, every target, the store's queries included)
//! holds a Luhn-valid run of 13 to 19 digits, and the provider token is only in its
//! link row and in no log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use citypass_payments::card::contains_card_number;
use citypass_payments::link::Provider;
use citypass_payments::payments::LinkRequest;
use citypass_payments::tap::{Place, TapIn, TapOut, TapRules, TapSettings, Void};
use citypass_payments::{Error, FareClass, FareTable, Payments, PostgresStore, TransitAccount};
use sqlx::Row;

const T0: u64 = 1_800_000_000;
const TOKEN: &str = "agr_sandbox_4f9c2a7e1b";

/// Every log line of the test's process, as the fmt layer writes them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures every event of the process from now on (one test per process under
    /// nextest; under `cargo test` the first test to install it wins, which is this
    /// file's only test).
    fn install() -> Self {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .without_time()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

/// `line` without the SQL text of a `sqlx::query` event (`summary`, `db.statement`):
/// the statement is the program's own constant text, whose placeholders (`$1, $2, …
/// $21`) read as one long run of digits; sqlx never logs the bound values, and the rest
/// of the event (rows, timings) is searched like any other line.
fn without_statement(line: &str) -> String {
    match (line.find(" summary=\""), line.find(" rows_affected=")) {
        (Some(start), Some(end)) if start < end => format!("{}{}", &line[..start], &line[end..]),
        _ => line.to_owned(),
    }
}

fn tap_in(account: TransitAccount, scan: &str, place: Place, at: u64) -> TapIn {
    TapIn {
        account,
        gate_id: "gate-1".to_owned(),
        scan_id: scan.to_owned(),
        place,
        at,
        fare_class: FareClass::Student,
    }
}

fn tap_out(account: TransitAccount, scan: &str, at: u64) -> TapOut {
    TapOut {
        account,
        gate_id: "gate-2".to_owned(),
        scan_id: scan.to_owned(),
        station: "xidan".to_owned(),
        at,
        fare_class: FareClass::Adult,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_or_log_line_holds_a_card_number() {
    let logs = Captured::install();
    let (pool, _url) = citypass_testkit::fresh_database().await;
    let store = PostgresStore::new(pool.clone()).await.unwrap();
    let fares = FareTable::from_yaml(include_str!("../config/fares.yaml")).unwrap();
    let p = Payments::new(
        Arc::new(store),
        TapRules::new(Arc::new(fares), TapSettings::default()).unwrap(),
    );
    let link = |account, token| LinkRequest {
        account,
        provider: Provider::UnionPay,
        token,
        last4: "1111",
        consent_version: "2026-01",
        consented_at: T0 - 10,
    };
    for n in 1..=3u8 {
        // Hex with letters in it, as random accounts are: an account of 32 decimal
        // digits ("0101…") holds 13-19-digit windows that pass Luhn by chance.
        let account = TransitAccount::from_bytes([0xa0 | n; 16]);
        assert!(matches!(
            p.link(link(account, "6212 3456 7890 1265"), T0).await,
            Err(Error::InvalidArgument { .. })
        ));
        p.link(link(account, TOKEN), T0).await.unwrap();
        p.tap_in(tap_in(
            account,
            &format!("a{n}"),
            Place::Metro("pingguoyuan".into()),
            T0,
        ))
        .await
        .unwrap();
        p.tap_out(tap_out(account, &format!("b{n}"), T0 + 1800))
            .await
            .unwrap();
        p.tap_in(tap_in(
            account,
            &format!("c{n}"),
            Place::Bus("944".into()),
            T0 + 2000,
        ))
        .await
        .unwrap();
        p.void(Void {
            account,
            gate_id: "gate-1".to_owned(),
            scan_id: format!("c{n}"),
            at: T0 + 2003,
        })
        .await
        .unwrap();
        p.tap_in(tap_in(
            account,
            &format!("d{n}"),
            Place::Metro("xidan".into()),
            T0 + 3000,
        ))
        .await
        .unwrap();
        p.unlink(account, T0 + 3100).await.unwrap();
        p.tap_out(tap_out(account, &format!("e{n}"), T0 + 4000))
            .await
            .unwrap();
    }
    // A stranger's taps (no link) are refused and leave no trace of the stranger.
    let stranger = TransitAccount::from_bytes([0xee; 16]);
    p.tap_in(tap_in(stranger, "x1", Place::Metro("xidan".into()), T0))
        .await
        .unwrap();
    assert!(p.tap_out(tap_out(stranger, "x2", T0 + 60)).await.is_err());
    let riders: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_riders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(riders, 3, "only the linked riders");

    let (report, verdict) = p.check_ledger().await.unwrap();
    assert_eq!(verdict, Ok(()));
    assert_eq!(
        (report.charges, report.cancelled_charges),
        (9, 3),
        "{report:?}"
    );

    let columns = sqlx::query(
        "SELECT table_name::TEXT AS t, column_name::TEXT AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name LIKE 'payment_%' \
           AND data_type IN ('text', 'character varying')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        columns.len(),
        13,
        "the text columns of every table: a new one must be searched too, so update this count"
    );
    let mut values = 0;
    for column in columns {
        let (table, name): (String, String) = (column.get("t"), column.get("c"));
        let rows = sqlx::query(&format!(
            "SELECT {name} AS v FROM {table} WHERE {name} IS NOT NULL"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        for row in rows {
            let value: String = row.get("v");
            values += 1;
            assert!(
                !contains_card_number(&value),
                "{table}.{name} holds a card number"
            );
            if value.contains(TOKEN) {
                assert_eq!(
                    (table.as_str(), name.as_str()),
                    ("payment_links", "provider_token")
                );
            }
        }
    }
    assert!(values > 50, "the run wrote text: {values}");

    // Each line alone: a run of digits never spans two events.
    let logs = logs.text();
    let lines = logs.lines().count();
    assert!(
        lines > 20,
        "the run logged (the store's queries): {lines} lines"
    );
    for line in logs.lines() {
        let line = without_statement(line);
        assert!(
            !contains_card_number(&line),
            "a log line holds a card number"
        );
        assert!(!line.contains(TOKEN), "a log line holds the provider token");
    }
}
