//! The request log: counters by verb and resource, and a bounded list of recent requests.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The API verb of a request, as the API server's audit log names it (apply is kept apart
/// from other patches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// GET of one object (or a subresource of it).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST (including subresources such as eviction and binding).
    Create,
    /// PUT.
    Update,
    /// PATCH with a JSON merge, JSON or strategic merge patch.
    Patch,
    /// PATCH with `application/apply-patch+yaml` (server-side apply).
    Apply,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// Whether the verb can change stored state.
    pub fn is_write(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    /// Lower-case name (`get`, `list`, ..., `apply`, `deletecollection`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Apply => "apply",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What requests are counted by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    /// The verb.
    pub verb: Verb,
    /// API group (empty for core).
    pub group: String,
    /// Plural resource name (`pods`, `pgpools`).
    pub resource: String,
    /// Subresource (`status`, `scale`, `eviction`, `binding`), if any.
    pub subresource: Option<String>,
    /// Who sent it: the name given to [`crate::TestServer::client_as`], or the `User-Agent`
    /// of a remote client (`remote` when absent).
    pub agent: String,
}

impl RequestKey {
    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{}", self.resource, s),
            None => self.resource.clone(),
        }
    }

    /// Whether `resource` (`pods`, `pods/status`, `pods/*`, `*`) names this key's resource.
    pub fn matches_resource(&self, resource: &str) -> bool {
        resource_matches(resource, &self.resource, self.subresource.as_deref())
    }
}

pub(crate) fn resource_matches(pattern: &str, resource: &str, sub: Option<&str>) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((r, "*")) => r == resource,
        Some((r, s)) => r == resource && sub == Some(s),
        None => pattern == resource && sub.is_none(),
    }
}

/// One logged request.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Sequence number, starting at 1.
    pub seq: u64,
    /// Verb, resource and agent.
    pub key: RequestKey,
    /// Namespace in the path, if any.
    pub namespace: Option<String>,
    /// Object name in the path, if any.
    pub name: Option<String>,
    /// HTTP status code of the answer.
    pub code: u16,
    /// Whether the request changed stored state (a new resourceVersion).
    pub changed: bool,
}

impl fmt::Display for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} {} {}{}{} -> {}{} [{}]",
            self.seq,
            self.key.verb,
            self.key.resource_path(),
            self.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            self.name.as_deref().unwrap_or(""),
            if self.key.group.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.key.group)
            },
            self.code,
            if self.changed { " changed" } else { "" },
            self.key.agent
        )
    }
}

/// Request counters. Obtain with [`RequestLog::snapshot`] or [`RequestLog::since`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestCounts {
    requests: BTreeMap<RequestKey, u64>,
    changes: BTreeMap<RequestKey, u64>,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Requests with `verb` to `resource` (`pods`, `pods/status`, `pods/*`, `*`).
    pub fn count(&self, verb: Verb, resource: &str) -> u64 {
        self.sum(|k| k.verb == verb && k.matches_resource(resource))
    }

    /// Write requests (create, update, patch, apply, delete, deletecollection), whether or not
    /// they changed anything.
    pub fn writes(&self) -> u64 {
        self.sum(|k| k.verb.is_write())
    }

    /// Write requests to `resource` (same patterns as [`count`](Self::count)).
    pub fn writes_to(&self, resource: &str) -> u64 {
        self.sum(|k| k.verb.is_write() && k.matches_resource(resource))
    }

    /// Write requests sent by `agent`.
    pub fn writes_by(&self, agent: &str) -> u64 {
        self.sum(|k| k.verb.is_write() && k.agent == agent)
    }

    /// Write requests sent by anyone except `agents` (e.g. `&["kubelet"]`).
    pub fn writes_excluding(&self, agents: &[&str]) -> u64 {
        self.sum(|k| k.verb.is_write() && !agents.contains(&k.agent.as_str()))
    }

    /// Write requests that changed stored state (a new resourceVersion).
    pub fn changes(&self) -> u64 {
        self.changes.values().sum()
    }

    /// Changing writes by anyone except `agents`.
    pub fn changes_excluding(&self, agents: &[&str]) -> u64 {
        self.changes
            .iter()
            .filter(|(k, _)| !agents.contains(&k.agent.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// Sum of requests whose key satisfies `pred`.
    pub fn sum(&self, pred: impl Fn(&RequestKey) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every key with its request count.
    pub fn iter(&self) -> impl Iterator<Item = (&RequestKey, u64)> {
        self.requests.iter().map(|(k, n)| (k, *n))
    }

    /// Counts in `self` minus counts in `earlier`.
    pub fn diff(&self, earlier: &RequestCounts) -> RequestCounts {
        let sub = |a: &BTreeMap<RequestKey, u64>, b: &BTreeMap<RequestKey, u64>| {
            a.iter()
                .filter_map(|(k, n)| {
                    let d = n.saturating_sub(b.get(k).copied().unwrap_or(0));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect()
        };
        RequestCounts {
            requests: sub(&self.requests, &earlier.requests),
            changes: sub(&self.changes, &earlier.changes),
        }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, n) in &self.requests {
            let c = self.changes.get(k).copied().unwrap_or(0);
            writeln!(
                f,
                "{:>6} {:<16} {:<40} {:<14} changed={}",
                n,
                k.verb.as_str(),
                if k.group.is_empty() {
                    k.resource_path()
                } else {
                    format!("{}.{}", k.resource_path(), k.group)
                },
                k.agent,
                c
            )?;
        }
        Ok(())
    }
}

/// A point in the log to measure from.
#[derive(Clone, Debug)]
pub struct LogMark {
    counts: RequestCounts,
    seq: u64,
}

impl LogMark {
    /// The counters at the time of the mark.
    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }
}

const RECENT_LIMIT: usize = 50_000;

#[derive(Default)]
struct LogInner {
    seq: u64,
    counts: RequestCounts,
    recent: VecDeque<RequestRecord>,
}

/// Log of the requests the server answered. Cheap to clone.
#[derive(Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<LogInner>>,
    /// Woken after every answered request.
    answered: Arc<tokio::sync::Notify>,
    /// Woken after every request that changed stored state.
    changed: Arc<tokio::sync::Notify>,
}

/// What wakes [`RequestLog::wait_for`] to check its condition again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A write that changed stored state (the condition reads objects: a check's own reads
    /// do not wake it again).
    Change,
    /// Any answered request (the condition reads the request log, e.g. refused evictions).
    Request,
}

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A future that completes after the next request of the `wake` kind answered from now
    /// on (registered at once, so nothing between this call and the await is missed).
    pub fn next(&self, wake: Wake) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        let notify = match wake {
            Wake::Change => self.changed.clone(),
            Wake::Request => self.answered.clone(),
        };
        let mut next = Box::pin(notify.notified_owned());
        next.as_mut().enable();
        next
    }

    /// Waits until `check` gives a value, checking at once and again after each request of
    /// the `wake` kind (no polling); panics naming `what` after `limit`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        wake: Wake,
        limit: Duration,
        what: &str,
        mut check: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let wait = async {
            loop {
                let next = self.next(wake);
                if let Some(v) = check().await {
                    return v;
                }
                next.await;
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
        }
    }

    pub(crate) fn record(
        &self,
        key: RequestKey,
        namespace: Option<String>,
        name: Option<String>,
        code: u16,
        changed: bool,
    ) {
        let mut l = self.lock();
        l.seq += 1;
        let seq = l.seq;
        *l.counts.requests.entry(key.clone()).or_default() += 1;
        if changed {
            *l.counts.changes.entry(key.clone()).or_default() += 1;
        }
        l.recent.push_back(RequestRecord {
            seq,
            key,
            namespace,
            name,
            code,
            changed,
        });
        while l.recent.len() > RECENT_LIMIT {
            l.recent.pop_front();
        }
        drop(l);
        self.answered.notify_waiters();
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// The counters since the server started.
    pub fn snapshot(&self) -> RequestCounts {
        self.lock().counts.clone()
    }

    /// Remember the current position, to measure an interval with [`since`](Self::since).
    pub fn mark(&self) -> LogMark {
        let l = self.lock();
        LogMark {
            counts: l.counts.clone(),
            seq: l.seq,
        }
    }

    /// Counters of the requests answered after `mark`.
    pub fn since(&self, mark: &LogMark) -> RequestCounts {
        self.snapshot().diff(&mark.counts)
    }

    /// Write requests answered after `mark`.
    pub fn writes_since(&self, mark: &LogMark) -> u64 {
        self.since(mark).writes()
    }

    /// Writes after `mark` that changed stored state.
    pub fn changes_since(&self, mark: &LogMark) -> u64 {
        self.since(mark).changes()
    }

    /// The (most recent 50 000) requests answered after `mark`, oldest first.
    pub fn records_since(&self, mark: &LogMark) -> Vec<RequestRecord> {
        self.lock()
            .recent
            .iter()
            .filter(|r| r.seq > mark.seq)
            .cloned()
            .collect()
    }

    /// The most recent requests (up to 50 000), oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.lock().recent.iter().cloned().collect()
    }
}
