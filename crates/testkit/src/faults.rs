//! Fault injection: failing requests, latency, closing watch streams.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::log::{RequestKey, Verb, resource_matches};

/// A rule failing the next `times` requests that match it.
///
/// ```
/// use testkit::{FaultRule, Verb};
/// let rule = FaultRule::new(503).verb(Verb::Patch).resource("pgpools/status").times(2);
/// # let _ = rule;
/// ```
#[derive(Clone, Debug)]
pub struct FaultRule {
    code: u16,
    times: usize,
    verb: Option<Verb>,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    agent: Option<String>,
    message: Option<String>,
}

impl FaultRule {
    /// Fail with HTTP `code` (the `metav1.Status` reason follows the code: 409 Conflict,
    /// 429 TooManyRequests, 500 InternalError, 503 ServiceUnavailable, ...). Matches any
    /// request once until narrowed.
    pub fn new(code: u16) -> Self {
        Self {
            code,
            times: 1,
            verb: None,
            resource: "*".into(),
            namespace: None,
            name: None,
            agent: None,
            message: None,
        }
    }

    /// Only requests with this verb. [`Verb::Patch`] also matches server-side apply (as in the
    /// API server, where apply is a patch); [`Verb::Apply`] matches only apply.
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only this resource: `pods` (the object itself, no subresource), `pods/status`,
    /// `pods/*` (object and any subresource) or `*` (default).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = resource.into();
        self
    }

    /// Only objects in this namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Only the object with this name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only requests from this agent (see [`crate::TestServer::client_as`]).
    pub fn agent(mut self, agent: &str) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// How many matching requests fail (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    /// The message of the returned Status.
    pub fn message(mut self, msg: &str) -> Self {
        self.message = Some(msg.into());
        self
    }

    fn matches(&self, key: &RequestKey, ns: Option<&str>, name: Option<&str>) -> bool {
        let verb_ok = match self.verb {
            None => true,
            Some(Verb::Patch) => matches!(key.verb, Verb::Patch | Verb::Apply),
            Some(v) => v == key.verb,
        };
        verb_ok
            && resource_matches(&self.resource, &key.resource, key.subresource.as_deref())
            && self.namespace.as_deref().is_none_or(|n| Some(n) == ns)
            && self.name.as_deref().is_none_or(|n| Some(n) == name)
            && self.agent.as_deref().is_none_or(|a| a == key.agent)
    }
}

struct FaultsInner {
    rules: Vec<FaultRule>,
    latency: Duration,
    watches: CancellationToken,
}

/// Fault injection handle of a [`crate::TestServer`]. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<FaultsInner>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(FaultsInner {
                rules: Vec::new(),
                latency: Duration::ZERO,
                watches: CancellationToken::new(),
            })),
        }
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fail the next `n` requests with `verb` to `resource` (see [`FaultRule::resource`] for
    /// the syntax, e.g. `"pgpools"` or `"pods/eviction"`) with HTTP `code`.
    pub fn fail_next(&self, n: usize, verb: Verb, resource: &str, code: u16) {
        self.inject(FaultRule::new(code).verb(verb).resource(resource).times(n));
    }

    /// Add a rule. Rules are checked in the order they were added.
    pub fn inject(&self, rule: FaultRule) {
        if rule.times > 0 {
            self.lock().rules.push(rule);
        }
    }

    /// Failures still to be injected, summed over all rules.
    pub fn pending(&self) -> usize {
        self.lock().rules.iter().map(|r| r.times).sum()
    }

    /// Delay every request by `latency` (zero to disable).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// End every open watch stream now (clients see a normal end of stream and re-watch).
    pub fn close_watches(&self) {
        let mut l = self.lock();
        l.watches.cancel();
        l.watches = CancellationToken::new();
    }

    /// Remove all rules and latency.
    pub fn clear(&self) {
        let mut l = self.lock();
        l.rules.clear();
        l.latency = Duration::ZERO;
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn watch_token(&self) -> CancellationToken {
        self.lock().watches.clone()
    }

    /// Consume one failure matching this request, if any.
    pub(crate) fn check(
        &self,
        key: &RequestKey,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Option<ApiError> {
        let mut l = self.lock();
        let idx = l.rules.iter().position(|r| r.matches(key, ns, name))?;
        let rule = &mut l.rules[idx];
        rule.times -= 1;
        let msg = rule
            .message
            .clone()
            .unwrap_or_else(|| format!("injected fault: {} {}", key.verb, key.resource_path()));
        let code = rule.code;
        if rule.times == 0 {
            l.rules.remove(idx);
        }
        Some(ApiError::injected(code, &msg))
    }
}
