//! `rediss://` against a real redis-server speaking TLS with a certificate from the
//! deployment's CA (`./scripts/test` installs redis-server; this test starts its own).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use citypass_pki::{Authority, CA_LIFE, Subject};

/// Longest the test waits for the server to come up.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn ping(client: &redis::Client) -> redis::RedisResult<String> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut connection).await
}

#[tokio::test]
async fn rediss_trusts_the_deployment_ca_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate(CA_LIFE).unwrap();
    let files = ca
        .issue(&Subject::service("redis"))
        .unwrap()
        .write_dir(dir.path())
        .unwrap();
    let port = free_port();
    let server = Server(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&files.cert_file)
            .arg("--tls-key-file")
            .arg(&files.key_file)
            .arg("--tls-ca-cert-file")
            .arg(&files.ca_file)
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (./scripts/test installs it)"),
    );
    let url = format!("rediss://127.0.0.1:{port}/");
    let trusted = citypass_redis::client(&url, Some(ca.cert_pem().as_bytes())).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match ping(&trusted).await {
            Ok(pong) => {
                assert_eq!(pong, "PONG");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no TLS PING within {PATIENCE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The same server is not trusted through the system's public roots...
    let public_roots = citypass_redis::client(&url, None).unwrap();
    assert!(
        ping(&public_roots).await.is_err(),
        "a private CA is not a public root"
    );
    // ...nor through another CA's certificate...
    let other = Authority::generate(CA_LIFE).unwrap();
    let impostor = citypass_redis::client(&url, Some(other.cert_pem().as_bytes())).unwrap();
    assert!(ping(&impostor).await.is_err(), "another CA is not trusted");
    // ...and plaintext gets nothing from the TLS port.
    let plaintext = citypass_redis::client(&format!("redis://127.0.0.1:{port}/"), None).unwrap();
    let result = tokio::time::timeout(PATIENCE, ping(&plaintext)).await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "plaintext must not be answered"
    );
    drop(server);
}
