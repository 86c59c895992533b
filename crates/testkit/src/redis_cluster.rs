//! A Redis Cluster of three primaries on loopback, started by a test and stopped when
//! dropped: `redis-server --cluster-enabled` and `redis-cli --cluster create`
//! (installed with Redis by `./scripts/test`). For the contract suites of stores that
//! run on a cluster (the verifier's marks and venue counts).

use std::time::Duration;

/// A Redis Cluster of three primaries on free loopback ports, stopped when dropped.
pub struct LocalCluster {
    /// `redis://127.0.0.1:<port>/` of each primary.
    pub nodes: Vec<String>,
    servers: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts the three servers and joins them into a cluster (up to 30 s).
    pub async fn start() -> LocalCluster {
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
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
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
        let nodes: Vec<String> = ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect();
        let cluster = LocalCluster {
            nodes,
            servers,
            _dir: dir,
        };
        for node in &cluster.nodes {
            wait_for(node, "PING", |reply| reply == "PONG").await;
        }
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        for node in &cluster.nodes {
            wait_for(node, "CLUSTER INFO", |reply| {
                reply.contains("cluster_state:ok")
            })
            .await;
        }
        cluster
    }

    /// Keys held by each primary.
    pub async fn keys_per_node(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            let client = redis::Client::open(node.as_str()).unwrap();
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

/// Waits (up to 30 s) until `command` at `node` answers as `ok` says.
async fn wait_for(node: &str, command: &str, ok: impl Fn(&str) -> bool) {
    let client = redis::Client::open(node).unwrap();
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
