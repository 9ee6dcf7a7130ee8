//! The state every part of the server shares: the store behind its lock, the fault injector,
//! the request log and the tunables. Both the request handlers and the watch streams use it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::faults::Faults;
use crate::latency::Latency;
use crate::log::RequestLog;
use crate::state::State;

/// Tunables of a [`TestServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Watch events kept per kind for resuming watches; older resourceVersions get `410 Gone`.
    pub history_limit: usize,
    /// How often watches that asked for bookmarks get one while idle.
    pub bookmark_interval: Duration,
    /// CRDs whose kinds are served from the start (as if created through the API).
    pub crds: Vec<CustomResourceDefinition>,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// Round-trip and watch delays ([`Latency::OFF`] by default).
    pub latency: Latency,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            crds: Vec::new(),
            namespaces: vec!["default".into(), "kube-system".into()],
            latency: Latency::OFF,
        }
    }
}

/// What a [`crate::TestServer`] and its clones share.
pub(crate) struct Inner {
    state: Mutex<State>,
    pub faults: Faults,
    pub log: RequestLog,
    pub config: ServerConfig,
}

impl Inner {
    pub fn new(state: State, faults: Faults, log: RequestLog, config: ServerConfig) -> Self {
        Self {
            state: Mutex::new(state),
            faults,
            log,
            config,
        }
    }

    /// The store, locked (a poisoned lock is taken over: the store stays usable).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
