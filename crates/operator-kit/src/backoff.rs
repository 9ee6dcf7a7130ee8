//! Per-object error backoff for a controller's `error_policy`, with the rule for when a
//! failure deserves a Warning event.
//!
//! kube-runtime's controller retries a failed reconcile after whatever `error_policy`
//! returns; it keeps no count of failures. [`ErrorBackoff`] keeps that count per key (an
//! `ObjectRef<K>`, a `namespace/name` string, a pod UID, ...): the delay doubles with each
//! failure in a row up to a cap, and a success (or the object going away) starts it over.
//!
//! ```
//! use std::time::Duration;
//! use operator_kit::backoff::{ErrorBackoff, EventPolicy};
//!
//! let backoff = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(300))
//!     .with_event_policy(EventPolicy::FirstAndOnChange);
//! // in error_policy:
//! let failure = backoff.failed("demo/pp".to_string(), Some("connection refused"));
//! assert_eq!(failure.delay, Duration::from_secs(1));
//! assert!(failure.emit_event);
//! // in reconcile, after a success:
//! backoff.succeeded(&"demo/pp".to_string());
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// When a failure should be reported with a Warning event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventPolicy {
    /// Never: the caller reports failures some other way (or not at all).
    Never,
    /// On every failure.
    Every,
    /// On the first failure of a run of failures (the first after a success).
    #[default]
    First,
    /// On the first failure of a run, and on every later one whose message differs from
    /// the last reported failure's message of the same key.
    FirstAndOnChange,
}

/// What to do about one failure: see [`ErrorBackoff::failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// How many failures in a row this key has had, this one included (1-based).
    pub attempt: u32,
    /// How long to wait before retrying (`Action::requeue(delay)`).
    pub delay: Duration,
    /// Whether to emit the Warning event for this failure, by the [`EventPolicy`].
    pub emit_event: bool,
}

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    /// Message of the last failure that was eventworthy (`Some` message given).
    last_message: Option<String>,
}

/// Consecutive failures per key, the retry delay they give, and the event decision.
///
/// Thread-safe (`&self` everywhere): keep one in the controller's context and call
/// [`failed`](Self::failed) from `error_policy` and [`succeeded`](Self::succeeded) from
/// `reconcile` after a success.
#[derive(Debug)]
pub struct ErrorBackoff<K> {
    base: Duration,
    cap: Duration,
    policy: EventPolicy,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Eq + Hash> ErrorBackoff<K> {
    /// A backoff whose first retry waits `base`, doubling per failure in a row up to `cap`;
    /// the event policy is [`EventPolicy::First`].
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            policy: EventPolicy::default(),
            entries: Mutex::default(),
        }
    }

    /// Uses `policy` to decide [`Failure::emit_event`].
    #[must_use]
    pub fn with_event_policy(mut self, policy: EventPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The first retry delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest retry delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failure of `key` and says how long to wait and whether to emit an event.
    ///
    /// `event_message` is the message the event would carry, or `None` for a failure that
    /// never deserves an event (e.g. a 409 Conflict that the next watch event resolves):
    /// such a failure counts for the delay but gets `emit_event == false` and does not
    /// change the remembered message.
    pub fn failed(&self, key: K, event_message: Option<&str>) -> Failure {
        let mut entries = self.lock();
        let entry = entries.entry(key).or_default();
        entry.failures = entry.failures.saturating_add(1);
        let attempt = entry.failures;
        let emit_event = match (self.policy, event_message) {
            (_, None) | (EventPolicy::Never, _) => false,
            (EventPolicy::Every, Some(_)) => true,
            (EventPolicy::First, Some(_)) => attempt == 1,
            (EventPolicy::FirstAndOnChange, Some(message)) => {
                attempt == 1 || entry.last_message.as_deref() != Some(message)
            }
        };
        if let Some(message) = event_message {
            entry.last_message = Some(message.to_string());
        }
        Failure {
            attempt,
            delay: delay(self.base, self.cap, attempt),
            emit_event,
        }
    }

    /// Records a success of `key`: the next failure is a first failure again.
    pub fn succeeded(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Forgets `key` (the object is gone); the same as [`succeeded`](Self::succeeded).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Failures in a row of `key` so far (0 when it has none).
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().get(key).map_or(0, |e| e.failures)
    }

    /// How many keys have failures recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// `true` when no key has failures recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The delay before retry number `attempt` (1-based): `base * 2^(attempt - 1)`, at most
/// `cap`. Saturates instead of overflowing, so every long enough run of failures reaches
/// `cap`.
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    if base.is_zero() {
        return Duration::ZERO;
    }
    let exp = attempt.saturating_sub(1);
    if exp >= 64 {
        return cap;
    }
    let nanos = base.as_nanos().saturating_mul(1u128 << exp);
    if nanos >= cap.as_nanos() {
        return cap;
    }
    // Below `cap`, so the seconds fit in a u64.
    Duration::new(
        u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX),
        u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn delay_doubles_from_base_and_stops_at_cap() {
        assert_eq!(delay(S(1), S(300), 0), S(1));
        assert_eq!(delay(S(1), S(300), 1), S(1));
        assert_eq!(delay(S(1), S(300), 2), S(2));
        assert_eq!(delay(S(1), S(300), 5), S(16));
        assert_eq!(delay(S(1), S(300), 9), S(256));
        assert_eq!(delay(S(1), S(300), 10), S(300));
        assert_eq!(delay(S(1), S(300), u32::MAX), S(300));
        let half = Duration::from_millis(500);
        assert_eq!(delay(half, S(300), 4), S(4));
        assert_eq!(delay(half, S(300), 40), S(300));
        // A tiny base still reaches the cap.
        assert_eq!(delay(Duration::from_nanos(1), S(300), 40), S(300));
        assert_eq!(delay(Duration::from_nanos(1), S(300), 64), S(300));
        assert_eq!(delay(Duration::from_nanos(1), S(300), 65), S(300));
        assert_eq!(
            delay(Duration::from_millis(1), S(300), 11),
            Duration::from_millis(1024)
        );
        assert_eq!(delay(Duration::ZERO, S(300), 9), Duration::ZERO);
    }

    #[test]
    fn failures_count_per_key_and_reset_on_success() {
        let b = ErrorBackoff::new(S(1), S(300));
        assert_eq!(b.failed("a", Some("x")).delay, S(1));
        assert_eq!(b.failed("a", Some("x")).delay, S(2));
        let third = b.failed("a", Some("x"));
        assert_eq!((third.attempt, third.delay), (3, S(4)));
        assert_eq!(b.failed("b", Some("x")).attempt, 1, "keys count apart");
        assert_eq!(b.failures(&"a"), 3);
        b.succeeded(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(
            b.failed("a", Some("x")).delay,
            S(1),
            "a success starts over"
        );
        b.forget(&"b");
        assert_eq!(b.len(), 1);
        b.forget(&"a");
        assert!(b.is_empty());
    }

    #[test]
    fn first_policy_emits_once_per_run_of_failures() {
        let b = ErrorBackoff::new(S(1), S(300));
        assert!(b.failed(1, Some("x")).emit_event);
        assert!(!b.failed(1, Some("y")).emit_event);
        b.succeeded(&1);
        assert!(b.failed(1, Some("y")).emit_event);
    }

    #[test]
    fn failures_without_message_count_but_never_emit() {
        let b = ErrorBackoff::new(S(1), S(300)).with_event_policy(EventPolicy::Every);
        let conflict = b.failed(1, None);
        assert_eq!((conflict.attempt, conflict.emit_event), (1, false));
        // As before: the first failure of the run had no event, the second is not first.
        let b = ErrorBackoff::new(S(1), S(300));
        assert!(!b.failed(1, None).emit_event);
        let second = b.failed(1, Some("x"));
        assert_eq!(
            (second.attempt, second.delay, second.emit_event),
            (2, S(2), false)
        );
    }

    #[test]
    fn first_and_on_change_emits_when_the_message_changes() {
        let b = ErrorBackoff::new(S(1), S(300)).with_event_policy(EventPolicy::FirstAndOnChange);
        assert!(b.failed(1, Some("x")).emit_event);
        assert!(!b.failed(1, Some("x")).emit_event);
        assert!(!b.failed(1, None).emit_event, "no message: no event");
        assert!(
            !b.failed(1, Some("x")).emit_event,
            "a None keeps the last message"
        );
        assert!(b.failed(1, Some("y")).emit_event);
        assert!(!b.failed(1, Some("y")).emit_event);
        assert!(b.failed(1, Some("x")).emit_event);
    }

    #[test]
    fn every_and_never_policies() {
        let every = ErrorBackoff::new(S(1), S(300)).with_event_policy(EventPolicy::Every);
        let never = ErrorBackoff::new(S(1), S(300)).with_event_policy(EventPolicy::Never);
        for _ in 0..3 {
            assert!(every.failed(1, Some("x")).emit_event);
            assert!(!never.failed(1, Some("x")).emit_event);
        }
    }

    #[test]
    fn shared_between_threads() {
        let b = std::sync::Arc::new(ErrorBackoff::new(S(1), S(300)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        b.failed("k".to_string(), None);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.failures(&"k".to_string()), 100);
    }
}
