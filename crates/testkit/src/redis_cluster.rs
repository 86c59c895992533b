//! A Redis Cluster of three primaries on loopback, started by a test and stopped when
//! dropped: `redis-server --cluster-enabled` and `redis-cli --cluster create`
//! (installed with Redis by `./scripts/test`). For the contract suites of stores that
//! run on a cluster (the verifier's marks and venue counts), and, over TLS only
//! ([`LocalCluster::start_tls`]), for the services launched as production runs them.

use std::path::PathBuf;
use std::time::Duration;

/// A Redis Cluster of three primaries on free loopback ports, stopped when dropped.
pub struct LocalCluster {
    /// `redis://127.0.0.1:<port>/` of each primary (`rediss://` over TLS).
    pub nodes: Vec<String>,
    servers: Vec<std::process::Child>,
    /// The CA of the nodes' certificate, PEM, when they speak TLS.
    ca_pem: Option<Vec<u8>>,
    _dir: tempfile::TempDir,
}

/// The TLS files of a cluster's nodes: one certificate for 127.0.0.1, its key, its CA.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The nodes' certificate (PEM).
    pub cert_file: PathBuf,
    /// Its key (PEM).
    pub key_file: PathBuf,
    /// The CA that signed it (PEM).
    pub ca_file: PathBuf,
}

impl LocalCluster {
    /// Starts the three servers and joins them into a cluster (up to 30 s).
    pub async fn start() -> LocalCluster {
        Self::start_with(None).await
    }

    /// The same cluster speaking TLS only, between its nodes too (`--tls-cluster`), with
    /// `tls`'s certificate; clients are not asked for one. Its nodes are `rediss://`.
    pub async fn start_tls(tls: &ClusterTls) -> LocalCluster {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&ClusterTls>) -> LocalCluster {
        citypass_runtime::tls::provider();
        let dir = tempfile::tempdir().unwrap();
        // Three client ports and three cluster-bus ports (named, rather than port +
        // 10 000, which may not exist for an ephemeral port).
        let free: Vec<u16> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|listener| listener.local_addr().unwrap().port())
            .collect();
        let (ports, buses) = free.split_at(3);
        let mut servers = Vec::new();
        for (port, bus) in ports.iter().zip(buses) {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let mut command = std::process::Command::new("redis-server");
            match tls {
                None => command.args(["--port", &port.to_string()]),
                Some(tls) => command
                    .args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cluster", "yes", "--tls-auth-clients", "no"])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert_file)
                    .arg("--tls-key-file")
                    .arg(&tls.key_file)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca_file),
            };
            let child = command
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-port", &bus.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (./scripts/test installs it)");
            servers.push(child);
        }
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        let nodes: Vec<String> = ports
            .iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}/"))
            .collect();
        let ca_pem = tls.map(|tls| std::fs::read(&tls.ca_file).expect("the cluster's CA"));
        let cluster = LocalCluster {
            nodes,
            servers,
            ca_pem,
            _dir: dir,
        };
        for node in &cluster.nodes {
            cluster
                .wait_for(node, "PING", |reply| reply == "PONG")
                .await;
        }
        let mut create = std::process::Command::new("redis-cli");
        if let Some(tls) = tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca_file);
        }
        let created = create
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        for node in &cluster.nodes {
            cluster
                .wait_for(node, "CLUSTER INFO", |reply| {
                    reply.contains("cluster_state:ok")
                })
                .await;
        }
        cluster
    }

    /// A client of one node (trusting the cluster's CA over TLS).
    fn client(&self, node: &str) -> redis::Client {
        match &self.ca_pem {
            None => redis::Client::open(node).unwrap(),
            Some(ca) => redis::Client::build_with_tls(
                node,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )
            .unwrap(),
        }
    }

    /// Keys held by each primary.
    pub async fn keys_per_node(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            let client = self.client(node);
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            counts.push(
                redis::cmd("DBSIZE")
                    .query_async::<i64>(&mut connection)
                    .await
                    .unwrap(),
            );
        }
        counts
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl LocalCluster {
    /// Waits (up to 30 s) until `command` at `node` answers as `ok` says.
    async fn wait_for(&self, node: &str, command: &str, ok: impl Fn(&str) -> bool) {
        let client = self.client(node);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let mut words = command.split(' ');
                let mut cmd = redis::cmd(words.next().unwrap());
                for word in words {
                    cmd.arg(word);
                }
                if let Ok(reply) = cmd.query_async::<String>(&mut connection).await
                    && ok(&reply)
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{node} never answered {command} as expected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
