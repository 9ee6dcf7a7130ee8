//! An operator binary as a child process: start, readiness, metrics, memory, stop.

use super::*;

/// An operator binary running as a child process.
pub(crate) struct Operator {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// Highest RssAnon seen by the sampler (KiB).
    pub(crate) peak_anon: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(crate) sampler: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub(crate) fn spawn(
        args: &Args,
        n: usize,
        name: &'static str,
        kubeconfig: &Path,
    ) -> anyhow::Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // The operators log to stdout: into the log file, or onto this program's stderr
        // (this program's stdout carries the tables).
        let log: std::os::fd::OwnedFd = match &args.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{name}-{n}.log"));
                std::fs::File::create(&path)
                    .with_context(|| format!("create {}", path.display()))?
                    .into()
            }
            None => std::io::stderr().as_fd().try_clone_to_owned()?,
        };
        let stderr = Stdio::from(log.try_clone()?);
        let binary = args.bin_dir().join(name);
        let mut command = match &args.wrap {
            // e.g. `heaptrack -o /tmp/{name}`: the wrapper's words, then the binary
            Some(wrap) => {
                let mut words = wrap.split_whitespace().map(|w| w.replace("{name}", name));
                let mut c = Command::new(words.next().context("--wrap is empty")?);
                c.args(words).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = command
            // its own process group, so that stop() reaches a wrapper's child too
            .process_group(0)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("WATCH_NAMESPACE")
            .args([
                "--leader-elect=false",
                &format!("--log-level={}", args.operator_log_level),
                &format!("--metrics-bind-address={addr}"),
            ])
            .args(
                (name == PROVISIONER).then(|| format!("--resync-seconds={}", args.resync_seconds)),
            )
            .stdout(Stdio::from(log))
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        // The kernel keeps the peak of the whole resident set (VmHWM), not of its parts:
        // sample the anonymous part (heap, stacks) to tell it from the mapped binary.
        let peak_anon = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let (peak, pid) = (peak_anon.clone(), child.id());
            tokio::spawn(async move {
                loop {
                    if let Some(kib) = proc_status_kib(pid, "RssAnon:") {
                        peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Ok(Self {
            name,
            child,
            addr,
            peak_anon,
            sampler,
        })
    }

    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status}", self.name);
            }
            if http_get(self.addr, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reconciles the provisioner counted so far: (Pgpool controller, PetSet controller),
    /// from its metrics.
    pub(crate) fn reconciles(&self) -> (f64, f64) {
        let Ok((_, body)) = http_get(self.addr, "/metrics") else {
            return (0.0, 0.0);
        };
        // `pgpool_operator_reconcile_total{controller="<controller>",result="..."} <n>`
        let sum = |controller: &str| -> f64 {
            let metric = "pgpool_operator_reconcile_total{";
            let label = format!("controller=\"{controller}\"");
            body.lines()
                .filter(|l| l.starts_with(metric) && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (sum("pgpool"), sum("petset"))
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub(crate) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").context("no VmHWM in /proc status")
    }

    /// Highest anonymous resident memory (RssAnon) sampled, in KiB.
    pub(crate) fn peak_anon_kib(&self) -> u64 {
        if let Some(kib) = proc_status_kib(self.child.id(), "RssAnon:") {
            self.peak_anon
                .fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
        }
        self.peak_anon.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn stop(&mut self) {
        // SIGTERM, then wait: the operators shut down gracefully.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A `kB` line of `/proc/<pid>/status`.
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let code = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body))
}
