//! A load client that measures what an application sees through a PostgreSQL endpoint (the
//! Pgpool Service) while something happens to it, such as an UpdateVersion:
//!
//! - **short connections**: at a fixed rate (default 50/s) a new connection for each
//!   `SELECT 1`, each with its own connect and query timeout;
//! - **long sessions** (default 2): connections kept open, querying every 0.5 s; when one is
//!   cut (its query fails), it is counted and reconnects at once, and again every 100 ms.
//!
//! The caller marks windows ([`LoadClient::start_window`] / [`LoadClient::stop_window`],
//! which waits for the queries the window sent); each gives a [`WindowStats`]: queries sent, succeeded, failed (with the first errors), the
//! longest gap without a successful short query, sessions cut and their reconnect times, and
//! p50/p99 latency. The client stops by itself after [`LoadConfig::max_duration`] or
//! [`LoadConfig::max_queries`], and when dropped.

mod report;
mod stats;
mod tls;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{NoTls, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

pub use report::{UpdateOutcome, judge, pod_restarts, read_catalog};
pub use stats::{KEPT_ERRORS, Recorder, Ticket, WindowStats, quantile};
pub use tls::{LoadTls, client_config};

/// `application_name` of the short connections.
pub const SHORT_APPLICATION_NAME: &str = "e2e-load-short";
/// `application_name` of the long sessions.
pub const SESSION_APPLICATION_NAME: &str = "e2e-load-session";

/// Where to connect and how hard to push.
#[derive(Clone)]
pub struct LoadConfig {
    /// Host (name or IP) of the endpoint.
    pub host: String,
    /// Port of the endpoint.
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Its password (never printed).
    pub password: String,
    /// Database to connect to.
    pub database: String,
    /// Short-connection queries per second.
    pub rate: f64,
    /// Number of long-lived sessions.
    pub sessions: usize,
    /// How often a long session queries.
    pub session_interval: Duration,
    /// Connect timeout of every connection (TCP and authentication).
    pub connect_timeout: Duration,
    /// Timeout of every `SELECT 1`.
    pub query_timeout: Duration,
    /// The client stops by itself after this long.
    pub max_duration: Duration,
    /// The client stops by itself after this many short queries.
    pub max_queries: u64,
    /// At most this many short queries in flight; further ticks are skipped and counted.
    pub max_in_flight: usize,
    /// TLS (`verify-full`, [`LoadTls`]) for every connection; `None`: plain text.
    pub tls: Option<LoadTls>,
}

impl std::fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("database", &self.database)
            .field("rate", &self.rate)
            .field("sessions", &self.sessions)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl LoadConfig {
    /// The defaults: 50 short queries/s, 2 sessions querying every 0.5 s, 2 s connect and
    /// query timeouts, at most 1 hour or 200,000 queries.
    pub fn new(host: &str, port: u16, user: &str, password: &str, database: &str) -> LoadConfig {
        LoadConfig {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: password.to_string(),
            database: database.to_string(),
            rate: 50.0,
            sessions: 2,
            session_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
            max_duration: Duration::from_secs(3600),
            max_queries: 200_000,
            max_in_flight: 256,
            tls: None,
        }
    }

    /// Parses `host:port` (the form of `E2E_PGPOOL_ADDR`).
    pub fn split_addr(addr: &str) -> anyhow::Result<(String, u16)> {
        let Some((host, port)) = addr.rsplit_once(':') else {
            bail!("{addr:?} is not host:port");
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("{addr:?} has no host");
        }
        let port = port
            .parse()
            .map_err(|e| anyhow::anyhow!("{addr:?}: bad port: {e}"))?;
        Ok((host.to_string(), port))
    }

    fn pg_config(&self, application_name: &str) -> Result<tokio_postgres::Config, String> {
        let mut c = tokio_postgres::Config::new();
        match &self.tls {
            Some(tls) => tls
                .apply(&mut c, &self.host)
                .map_err(|e| format!("{e:#}"))?,
            None => {
                c.host(&self.host);
            }
        }
        c.port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.database)
            .application_name(application_name)
            .connect_timeout(self.connect_timeout);
        Ok(c)
    }
}

struct Shared {
    recorder: Mutex<Recorder>,
    /// Bumped on every event, so waiters wake up.
    events: watch::Sender<u64>,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut Recorder)) {
        f(&mut lock(&self.recorder));
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn lock(m: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running load client; stops when dropped.
pub struct LoadClient {
    shared: Arc<Shared>,
    settle_timeout: Duration,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// A connection, a `SELECT 1` on it that must return `1`; the error as text.
async fn select_one(client: &tokio_postgres::Client, timeout: Duration) -> Result<(), String> {
    let rows = tokio::time::timeout(timeout, client.simple_query("SELECT 1"))
        .await
        .map_err(|_| format!("SELECT 1 timed out after {timeout:?}"))?
        .map_err(|e| error_text(&e))?;
    let value = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    match value.as_deref() {
        Some("1") => Ok(()),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

/// The server's message, or the error with its sources (the I/O error under "error
/// communicating with the server", for example).
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A connection's driver; it ends with the error that closed the connection, if any (the
/// server's `FATAL` message before it closes a session arrives there, not at the query).
type Driver = tokio::task::JoinHandle<Option<String>>;

async fn connect(
    config: &LoadConfig,
    application_name: &str,
) -> Result<(tokio_postgres::Client, Driver), String> {
    let pg = config.pg_config(application_name)?;
    let timed_out = || format!("connect timed out after {:?}", config.connect_timeout);
    // connect_timeout covers each TCP connect; this covers authentication (and TLS) too
    let (client, driver) = match &config.tls {
        None => {
            let connecting = tokio::time::timeout(config.connect_timeout, pg.connect(NoTls));
            let (client, connection) = connecting
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| error_text(&e))?;
            let driver: Driver =
                tokio::spawn(async move { connection.await.err().map(|e| error_text(&e)) });
            (client, driver)
        }
        Some(tls) => {
            let connecting =
                tokio::time::timeout(config.connect_timeout, pg.connect(tls.connector()));
            let (client, connection) = connecting
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| error_text(&e))?;
            let driver: Driver =
                tokio::spawn(async move { connection.await.err().map(|e| error_text(&e)) });
            (client, driver)
        }
    };
    Ok((client, driver))
}

/// One short-connection query: connect, `SELECT 1`, close.
async fn short_query(config: &LoadConfig) -> Result<(), String> {
    let (client, driver) = connect(config, SHORT_APPLICATION_NAME).await?;
    let result = select_one(&client, config.query_timeout).await;
    // dropping the client sends Terminate; let the connection end cleanly, briefly
    drop(client);
    let abort = driver.abort_handle();
    if tokio::time::timeout(config.query_timeout, driver)
        .await
        .is_err()
    {
        abort.abort();
    }
    result
}

async fn short_loop(config: LoadConfig, shared: Arc<Shared>, stop: CancellationToken) {
    let period = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut queries = JoinSet::new();
    let mut started = 0u64;
    while started < config.max_queries {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // reap finished ones so the set stays small
        while queries.try_join_next().is_some() {}
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shared.record(Recorder::skipped);
            continue;
        };
        started += 1;
        let mut ticket = Ticket::NONE;
        shared.record(|r| ticket = r.sent());
        let (config, shared) = (config.clone(), shared.clone());
        queries.spawn(async move {
            let begin = Instant::now();
            let result = short_query(&config).await;
            let end = Instant::now();
            shared.record(|r| r.finished(ticket, end, end - begin, result.err()));
            drop(permit);
        });
    }
    // the queries in flight finish within their timeouts
    while queries.join_next().await.is_some() {}
}

async fn session_loop(config: LoadConfig, shared: Arc<Shared>, stop: CancellationToken) {
    const RETRY: Duration = Duration::from_millis(100);
    let mut cut_at: Option<Instant> = None;
    'outer: loop {
        let (client, driver) = match connect(&config, SESSION_APPLICATION_NAME).await {
            Ok(c) => c,
            Err(error) => {
                // a first connect that fails is a cut too: the session is not there
                cut_at.get_or_insert_with(|| {
                    shared.record(|r| r.cut(error));
                    Instant::now()
                });
                tokio::select! {
                    _ = stop.cancelled() => break 'outer,
                    _ = tokio::time::sleep(RETRY) => continue 'outer,
                }
            }
        };
        let mut ticks = tokio::time::interval(config.session_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => { driver.abort(); break 'outer }
                _ = ticks.tick() => {}
            }
            match select_one(&client, config.query_timeout).await {
                Ok(()) => {
                    if let Some(at) = cut_at.take() {
                        shared.record(|r| r.reconnected(at.elapsed()));
                    }
                }
                Err(error) => {
                    if cut_at.is_none() {
                        cut_at = Some(Instant::now());
                        // the connection's own error says why, when the server said it
                        let abort = driver.abort_handle();
                        let why = match tokio::time::timeout(RETRY, driver).await {
                            Ok(Ok(Some(why))) => why,
                            _ => error,
                        };
                        abort.abort();
                        shared.record(|r| r.cut(why));
                    } else {
                        driver.abort();
                    }
                    continue 'outer;
                }
            }
        }
    }
}

impl LoadClient {
    /// Starts the short-connection loop and the long sessions on the current runtime.
    pub fn start(config: LoadConfig) -> LoadClient {
        let (events, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            recorder: Mutex::new(Recorder::default()),
            events,
        });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(short_loop(config.clone(), shared.clone(), stop.clone()));
        for _ in 0..config.sessions {
            tasks.spawn(session_loop(config.clone(), shared.clone(), stop.clone()));
        }
        // stops by itself, bounded in time
        let (deadline, limit) = (stop.clone(), config.max_duration);
        let settle_timeout = config.connect_timeout + config.query_timeout + Duration::from_secs(1);
        tasks.spawn(async move {
            tokio::select! {
                _ = deadline.cancelled() => {}
                _ = tokio::time::sleep(limit) => deadline.cancel(),
            }
        });
        LoadClient {
            shared,
            settle_timeout,
            stop,
            tasks,
        }
    }

    /// Opens window `name` (closing an open one without a summary).
    pub fn start_window(&self, name: &str) {
        let now = Instant::now();
        self.shared.record(|r| r.start(name, now));
    }

    /// The open window's counts so far.
    pub fn snapshot(&self) -> Option<WindowStats> {
        lock(&self.shared.recorder).snapshot(Instant::now())
    }

    /// Closes the open window: no query started from now on counts, the ones in flight are
    /// waited for (at most their connect and query timeouts, and a second); then prints its
    /// one-line summary and returns its counts.
    pub async fn stop_window(&self) -> Option<WindowStats> {
        self.shared.record(|r| r.close(Instant::now()));
        let mut events = self.shared.events.subscribe();
        let settling = async {
            while !lock(&self.shared.recorder).settled() {
                if events.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.settle_timeout, settling).await;
        let stats = lock(&self.shared.recorder).stop(Instant::now());
        if let Some(s) = &stats {
            println!("{s}");
        }
        stats
    }

    /// Waits until the open window's counts satisfy `cond`; fails after `timeout` with the
    /// last counts (or when no window is open, or the client stopped).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&WindowStats) -> bool,
    ) -> anyhow::Result<WindowStats> {
        let mut events = self.shared.events.subscribe();
        let waiting = async {
            loop {
                match self.snapshot() {
                    Some(s) if cond(&s) => return Ok(s),
                    Some(_) => {}
                    None => bail!("{what}: no window is open"),
                }
                if self.stop.is_cancelled() {
                    bail!("{what}: the load client stopped");
                }
                // a tick at least every 100 ms: the gap grows without events
                let _ = tokio::time::timeout(Duration::from_millis(100), events.changed()).await;
            }
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(result) => result,
            Err(_) => bail!(
                "{what}: not within {timeout:?}; seen: {}",
                self.snapshot()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "no window".into())
            ),
        }
    }

    /// Whether the client stopped (asked to, or its time ran out).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops the client and waits for its tasks (queries in flight end within their
    /// timeouts).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for LoadClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            LoadConfig::split_addr("10.96.0.12:9999").unwrap(),
            ("10.96.0.12".to_string(), 9999)
        );
        assert_eq!(
            LoadConfig::split_addr("[::1]:5432").unwrap(),
            ("::1".to_string(), 5432)
        );
        assert!(LoadConfig::split_addr("10.96.0.12").is_err());
        assert!(LoadConfig::split_addr(":9999").is_err());
        assert!(LoadConfig::split_addr("h:x").is_err());
    }

    #[test]
    fn the_password_is_not_in_the_debug_output() {
        let c = LoadConfig::new("h", 1, "u", "s3cret-value", "d");
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }
}
