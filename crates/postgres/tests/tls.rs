//! PostgreSQL over TLS with the deployment's CA: `sslmode=verify-full` against the test
//! server that `./scripts/test` starts with a certificate from a throwaway CA.

use citypass_testkit::{DATABASE_CA_VAR, database_ca, database_url};

/// `url` with `query` appended.
fn with(url: &str, query: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

#[tokio::test]
async fn verify_full_trusts_the_deployment_ca_and_nothing_else() {
    let url = database_url();
    let ca = database_ca();
    let verified = with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let pool = citypass_postgres::connect(&verified, 1)
        .await
        .unwrap_or_else(|e| panic!("verify-full with {DATABASE_CA_VAR}: {e}"));
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl, "the connection is encrypted");
    pool.close().await;

    // A CA that did not sign the server's certificate is refused.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.crt");
    let authority = citypass_pki::Authority::generate(citypass_pki::CA_LIFE).unwrap();
    std::fs::write(&other, authority.cert_pem()).unwrap();
    let wrong = with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    assert!(citypass_postgres::connect(&wrong, 1).await.is_err());
    // And so are the public roots.
    let public = with(&url, "sslmode=verify-full");
    assert!(citypass_postgres::connect(&public, 1).await.is_err());
}
