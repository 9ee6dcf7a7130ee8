//! What the load client saw, per window: pure bookkeeping, fed with events and timestamps by
//! the client's tasks (and by the tests, with made-up ones).

use std::fmt;
use std::time::{Duration, Instant};

/// How many error messages of failed queries a window keeps.
pub const KEPT_ERRORS: usize = 5;

/// The counts of one window, from [`Recorder::start`] to [`Recorder::stop`] (or so far).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    /// The window's name, for the summary line.
    pub name: String,
    /// How long the window lasted (so far).
    pub duration: Duration,
    /// Short-connection queries started.
    pub sent: u64,
    /// Short-connection queries that returned `1`.
    pub succeeded: u64,
    /// Short-connection queries that failed (connect, authentication, query or timeout).
    pub failed: u64,
    /// Ticks left out because too many queries were still in flight (the client's limit,
    /// not the server's failure).
    pub skipped: u64,
    /// The first [`KEPT_ERRORS`] distinct error messages of failed queries, with counts.
    pub errors: Vec<(String, u64)>,
    /// The longest time without a successful short query: between two successes, or
    /// from the window's start to the first one, or from the last one to the window's end.
    pub longest_gap: Duration,
    /// Long-lived sessions cut (their connection or query failed).
    pub cuts: u64,
    /// The first [`KEPT_ERRORS`] distinct errors that cut a session, with counts.
    pub cut_errors: Vec<(String, u64)>,
    /// For each reconnect in the window, how long the session was without a connection.
    pub reconnects: Vec<Duration>,
    /// Latency (connect and `SELECT 1`) of successful short queries, median.
    pub p50: Duration,
    /// Latency of successful short queries, 99th percentile.
    pub p99: Duration,
}

impl WindowStats {
    /// Cuts that have not reconnected (yet).
    pub fn unreconnected(&self) -> u64 {
        self.cuts
            .saturating_sub(u64::try_from(self.reconnects.len()).unwrap_or(u64::MAX))
    }

    /// The longest reconnect time, zero without reconnects.
    pub fn longest_reconnect(&self) -> Duration {
        self.reconnects.iter().copied().max().unwrap_or_default()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for WindowStats {
    /// One line: `load [name] 12.30 s: sent 615, ok 615, failed 0, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load [{}] {}: sent {}, ok {}, failed {}, longest gap {}, p50 {}, p99 {}, sessions cut {}",
            self.name,
            secs(self.duration),
            self.sent,
            self.succeeded,
            self.failed,
            secs(self.longest_gap),
            millis(self.p50),
            millis(self.p99),
            self.cuts,
        )?;
        if !self.reconnects.is_empty() {
            let times: Vec<String> = self.reconnects.iter().map(|d| secs(*d)).collect();
            write!(f, " (reconnected after {})", times.join(", "))?;
        }
        if self.unreconnected() > 0 {
            write!(f, ", {} not reconnected", self.unreconnected())?;
        }
        if self.skipped > 0 {
            write!(f, ", {} ticks skipped (client limit)", self.skipped)?;
        }
        if let Some((error, count)) = self.errors.first() {
            write!(f, "; first error: {count} x {error}")?;
        }
        if let Some((error, count)) = self.cut_errors.first() {
            write!(f, "; first cut: {count} x {error}")?;
        }
        Ok(())
    }
}

/// An open window.
#[derive(Debug)]
struct Open {
    stats: WindowStats,
    started: Instant,
    /// Set by [`Recorder::close`]: no query counts that starts later.
    closing: Option<Instant>,
    last_success: Instant,
    latencies: Vec<Duration>,
}

/// Collects the client's events into the open window, if any; events outside a window are
/// dropped.
#[derive(Debug, Default)]
pub struct Recorder {
    open: Option<Open>,
    /// Counts the windows, so a query knows whether it belongs to the open one.
    generation: u64,
}

/// Whether a short query counts in a window: given by [`Recorder::sent`], handed back to
/// [`Recorder::finished`]. A query counts in the window that was open, and not closing, when
/// it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(Option<u64>);

impl Ticket {
    /// A query sent outside any window.
    pub const NONE: Ticket = Ticket(None);
}

/// Counts `error` in `errors`, keeping the first [`KEPT_ERRORS`] distinct ones.
fn keep(errors: &mut Vec<(String, u64)>, error: String) {
    if let Some(entry) = errors.iter_mut().find(|(e, _)| *e == error) {
        entry.1 += 1;
    } else if errors.len() < KEPT_ERRORS {
        errors.push((error, 1));
    }
}

/// The `q`-quantile (0..=1) of sorted `values`, nearest rank; zero when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Recorder {
    /// Opens window `name` at `now`, replacing (and dropping) an open one.
    pub fn start(&mut self, name: &str, now: Instant) {
        self.generation += 1;
        self.open = Some(Open {
            stats: WindowStats {
                name: name.to_string(),
                ..WindowStats::default()
            },
            started: now,
            closing: None,
            last_success: now,
            latencies: Vec::new(),
        });
    }

    /// Whether a window is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// A short query was started; its ticket says in which window it counts.
    pub fn sent(&mut self) -> Ticket {
        match self.open.as_mut().filter(|w| w.closing.is_none()) {
            Some(w) => {
                w.stats.sent += 1;
                Ticket(Some(self.generation))
            }
            None => Ticket::NONE,
        }
    }

    /// Ends the open window at `now` for new queries; the queries it sent can still finish
    /// and count ([`Recorder::settled`]) until [`Recorder::stop`].
    pub fn close(&mut self, now: Instant) {
        if let Some(w) = self.open.as_mut().filter(|w| w.closing.is_none()) {
            w.closing = Some(now);
        }
    }

    /// Whether every short query the open window sent has finished.
    pub fn settled(&self) -> bool {
        self.open
            .as_ref()
            .is_none_or(|w| w.stats.succeeded + w.stats.failed >= w.stats.sent)
    }

    /// A tick was left out: too many queries in flight.
    pub fn skipped(&mut self) {
        if let Some(w) = self.open.as_mut().filter(|w| w.closing.is_none()) {
            w.stats.skipped += 1;
        }
    }

    /// A short query with `ticket` finished at `now` after `latency`, successfully or with
    /// `error`. Queries of another window (or none) count only for the gap.
    pub fn finished(
        &mut self,
        ticket: Ticket,
        now: Instant,
        latency: Duration,
        error: Option<String>,
    ) {
        let Some(w) = &mut self.open else { return };
        let started_inside = ticket == Ticket(Some(self.generation));
        match error {
            None => {
                if now > w.last_success && w.closing.is_none_or(|c| now <= c) {
                    w.stats.longest_gap = w.stats.longest_gap.max(now - w.last_success);
                    w.last_success = now;
                }
                if started_inside {
                    w.stats.succeeded += 1;
                    w.latencies.push(latency);
                }
            }
            Some(error) => {
                if !started_inside {
                    return;
                }
                w.stats.failed += 1;
                keep(&mut w.stats.errors, error);
            }
        }
    }

    /// A long-lived session was cut by `error`.
    pub fn cut(&mut self, error: String) {
        if let Some(w) = self.open.as_mut().filter(|w| w.closing.is_none()) {
            w.stats.cuts += 1;
            keep(&mut w.stats.cut_errors, error);
        }
    }

    /// A cut session is connected again, `after` its cut.
    pub fn reconnected(&mut self, after: Duration) {
        if let Some(w) = &mut self.open {
            w.stats.reconnects.push(after);
        }
    }

    /// The open window's counts as of `now`, without closing it.
    pub fn snapshot(&self, now: Instant) -> Option<WindowStats> {
        let w = self.open.as_ref()?;
        let mut stats = w.stats.clone();
        let end = w.closing.unwrap_or(now);
        stats.duration = end.saturating_duration_since(w.started);
        stats.longest_gap = stats
            .longest_gap
            .max(end.saturating_duration_since(w.last_success));
        let mut latencies = w.latencies.clone();
        latencies.sort();
        stats.p50 = quantile(&latencies, 0.5);
        stats.p99 = quantile(&latencies, 0.99);
        Some(stats)
    }

    /// Closes the open window at `now` and returns its counts.
    pub fn stop(&mut self, now: Instant) -> Option<WindowStats> {
        let stats = self.snapshot(now);
        self.open = None;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends a query and finishes it at once, at `at`.
    fn query(r: &mut Recorder, at: Instant, latency: Duration, error: Option<&str>) {
        let ticket = r.sent();
        r.finished(ticket, at, latency, error.map(str::to_string));
    }

    #[test]
    fn counts_gap_latency_and_cuts_of_a_window() {
        let t0 = Instant::now();
        let mut r = Recorder::default();
        query(&mut r, t0 + ms(5), ms(5), None);
        assert!(!r.is_open(), "events outside a window are dropped");
        r.start("update", t0 + ms(10));
        for i in 0..4 {
            query(&mut r, t0 + ms(30 + i * 20), ms(4 + i), None);
        }
        // 0.5 s without a success: two failures in between
        query(&mut r, t0 + ms(200), ms(3), Some("connection refused"));
        query(&mut r, t0 + ms(300), ms(3), Some("connection refused"));
        query(&mut r, t0 + ms(590), ms(3), None);
        r.cut("server closed the connection unexpectedly".into());
        r.cut("server closed the connection unexpectedly".into());
        r.reconnected(ms(480));
        let s = r.stop(t0 + ms(600)).expect("a window");
        assert!(!r.is_open());
        assert_eq!((s.sent, s.succeeded, s.failed), (7, 5, 2));
        assert_eq!(s.errors, vec![("connection refused".to_string(), 2)]);
        assert_eq!(s.longest_gap, ms(500));
        assert_eq!((s.cuts, s.unreconnected()), (2, 1));
        assert_eq!(s.longest_reconnect(), ms(480));
        assert_eq!(s.duration, ms(590));
        assert_eq!((s.p50, s.p99), (ms(5), ms(7)));
        let line = s.to_string();
        assert!(
            line.starts_with("load [update] 0.59 s: sent 7, ok 5, failed 2, longest gap 0.50 s"),
            "{line}"
        );
        assert!(
            line.contains("sessions cut 2 (reconnected after 0.48 s), 1 not reconnected"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "first error: 2 x connection refused; \
                 first cut: 2 x server closed the connection unexpectedly"
            ),
            "{line}"
        );
    }

    #[test]
    fn the_gap_runs_to_the_end_of_the_window_and_from_its_start() {
        let t0 = Instant::now();
        let mut r = Recorder::default();
        r.start("quiet", t0);
        assert_eq!(r.snapshot(t0 + ms(800)).expect("open").longest_gap, ms(800));
        r.finished(Ticket::NONE, t0 + ms(900), ms(2), None);
        let s = r.stop(t0 + ms(1000)).expect("a window");
        assert_eq!(s.longest_gap, ms(900));
        assert_eq!(s.failed, 0);
    }

    #[test]
    fn a_query_of_another_window_counts_only_for_the_gap() {
        let t0 = Instant::now();
        let mut r = Recorder::default();
        r.start("first", t0);
        let (a, b) = (r.sent(), r.sent());
        r.start("second", t0 + ms(100));
        r.finished(a, t0 + ms(150), ms(100), Some("timeout".into()));
        r.finished(b, t0 + ms(160), ms(100), None);
        let s = r.stop(t0 + ms(170)).expect("a window");
        assert_eq!((s.sent, s.succeeded, s.failed), (0, 0, 0));
        assert_eq!(s.longest_gap, ms(60));
        assert!(r.settled());
    }

    #[test]
    fn a_closed_window_waits_for_its_queries_and_ignores_new_ones() {
        let t0 = Instant::now();
        let mut r = Recorder::default();
        r.start("w", t0);
        query(&mut r, t0 + ms(20), ms(15), None);
        let (a, b) = (r.sent(), r.sent());
        r.close(t0 + ms(100));
        assert!(!r.settled(), "two queries still in flight");
        let late = r.sent();
        r.skipped();
        r.cut("closed".into());
        // in flight at the close: both count, the failure too
        r.finished(a, t0 + ms(1500), ms(1450), Some("connect timed out".into()));
        assert!(!r.settled(), "one query still in flight");
        r.finished(b, t0 + ms(1600), ms(1550), None);
        // sent after the close: ignored
        r.finished(late, t0 + ms(1700), ms(500), Some("refused".into()));
        assert!(r.settled());
        let s = r.stop(t0 + ms(2000)).expect("a window");
        assert_eq!((s.sent, s.succeeded, s.failed), (3, 2, 1));
        assert_eq!((s.skipped, s.cuts), (0, 0));
        assert_eq!(s.duration, ms(100));
        // a success after the close does not shorten the gap up to the close
        assert_eq!(s.longest_gap, ms(80));
    }

    #[test]
    fn only_the_first_distinct_errors_are_kept() {
        let t0 = Instant::now();
        let mut r = Recorder::default();
        r.start("w", t0);
        for i in 0..(KEPT_ERRORS + 3) {
            query(&mut r, t0 + ms(1), ms(1), Some(&format!("error {i}")));
        }
        query(&mut r, t0 + ms(1), ms(1), Some("error 0"));
        let s = r.stop(t0 + ms(2)).expect("a window");
        assert_eq!(s.errors.len(), KEPT_ERRORS);
        assert_eq!(s.errors[0], ("error 0".to_string(), 2));
        assert_eq!(s.failed, u64::try_from(KEPT_ERRORS).unwrap() + 4);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&v, 0.5), ms(50));
        assert_eq!(quantile(&v, 0.99), ms(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(quantile(&[ms(7)], 0.99), ms(7));
    }
}
