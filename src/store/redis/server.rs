//! A private `redis-server` for tests and benchmarks: on a free loopback port, without
//! persistence unless asked, stopped when dropped. Not used by the router itself.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (or, with `cluster`, several of them forming one cluster).
pub struct LocalRedis {
    nodes: Vec<Node>,
    dir: PathBuf,
}

/// A directory of its own under the system's temporary directory.
fn scratch_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "smartlink-redis-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct Node {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

/// Whether `redis-server` can be started here.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Node {
    fn start(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                self.dir.to_str().unwrap_or("."),
                "--logfile",
                "",
                "--loglevel",
                "warning",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        wait_for_port(self.port, true)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets a server with an append-only file write it out.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_port(port: u16, open: bool) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let answering = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if answering == open {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(std::io::Error::other(format!(
        "redis-server on port {port} did not {}",
        if open { "start" } else { "stop" }
    )))
}

impl LocalRedis {
    /// One server without persistence.
    pub fn start() -> std::io::Result<LocalRedis> {
        LocalRedis::start_with(&[])
    }

    /// One server whose data survives `restart` (an append-only file in its own directory).
    pub fn start_persistent() -> std::io::Result<LocalRedis> {
        LocalRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    fn start_with(extra: &[&str]) -> std::io::Result<LocalRedis> {
        let dir = scratch_dir()?;
        let mut node = Node {
            port: free_port(),
            child: None,
            dir: dir.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        node.start()?;
        Ok(LocalRedis {
            nodes: vec![node],
            dir,
        })
    }

    /// A cluster of `masters` nodes without replicas; returns once every slot is served.
    pub fn start_cluster(masters: usize) -> std::io::Result<LocalRedis> {
        let dir = scratch_dir()?;
        // Built first, so that nodes started before a failure are stopped with it.
        let mut local = LocalRedis {
            nodes: Vec::new(),
            dir: dir.clone(),
        };
        for i in 0..masters {
            let node_dir = dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            local.nodes.push(Node {
                port: free_port(),
                child: None,
                dir: node_dir,
                extra: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    "nodes.conf".into(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ],
            });
            local.nodes.last_mut().expect("just pushed").start()?;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &local.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = local.nodes.iter().all(|node| {
                Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
            if ok {
                return Ok(local);
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(
                    "the cluster did not reach cluster_state:ok",
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://` URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}/", node.port))
            .collect()
    }

    /// The URL of the (first) node.
    pub fn url(&self) -> String {
        self.urls().remove(0)
    }

    /// Stops every node (SIGTERM, as an operator would) and waits until the ports are closed.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
            let _ = wait_for_port(node.port, false);
        }
    }

    /// Starts the stopped nodes again on the same ports.
    pub fn restart(&mut self) -> std::io::Result<()> {
        for node in &mut self.nodes {
            if node.child.is_none() {
                node.start()?;
            }
        }
        Ok(())
    }

    /// Runs `redis-cli` against the first node and answers its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.nodes[0].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
