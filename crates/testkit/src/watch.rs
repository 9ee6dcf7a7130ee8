//! Watch streams: initial events, replay from the kind's history, live events from a
//! broadcast channel, bookmarks, timeouts and `410 Gone`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Inner;
use crate::state::{Event, EventType, State};

/// Which objects a watch (or list) sees.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

/// Parameters of a watch request.
pub(crate) struct WatchSpec {
    pub kind: usize,
    pub filter: Filter,
    /// `None` for an unset or `"0"` resourceVersion (start with the current state).
    pub rv: Option<u64>,
    pub send_initial: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub api_version: String,
}

pub(crate) fn event_line(ty: &str, obj: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serialising a Value cannot fail.
    let _ = serde_json::to_writer(&mut buf, obj);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// What a watcher sees of one event, given its filter.
fn translate(filter: &Filter, ev: &Event) -> Option<EventType> {
    let now = filter.matches(&ev.obj);
    match ev.ty {
        EventType::Added | EventType::Deleted => now.then_some(ev.ty),
        EventType::Modified => {
            let before = ev.prev.as_ref().is_none_or(|p| filter.matches(p));
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }
}

/// A watch event line for a stored event (its object is serialised once for all watchers).
fn stored_event_line(ty: EventType, ev: &Event) -> Bytes {
    let obj = ev.object_json();
    let mut buf = Vec::with_capacity(obj.len() + 32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    buf.extend_from_slice(obj);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

pub(crate) struct WatchStream {
    inner: Arc<Inner>,
    kind_name: String,
    api_version: String,
    filter: Filter,
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Event>>,
    last_rv: u64,
    deadline: Option<tokio::time::Instant>,
    bookmark_every: Option<Duration>,
    cancel: CancellationToken,
    done: bool,
}

impl WatchStream {
    /// Set up a watch while holding the state lock, so that no event falls between the
    /// replayed history and the live subscription.
    pub fn start(inner: Arc<Inner>, st: &State, spec: WatchSpec) -> Result<Self, ApiError> {
        let ks = &st.kinds[spec.kind];
        let mut pending = VecDeque::new();
        let rx = ks.tx.subscribe();
        let current = st.rv;
        let kind_name = ks.info.kind.clone();
        match spec.rv {
            Some(rv) if !spec.send_initial => {
                if rv < ks.compacted_rv {
                    let err = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {} ({})", rv, ks.compacted_rv),
                    );
                    pending.push_back(event_line("ERROR", &err.to_status()));
                    return Ok(Self::finished(inner, kind_name, spec, pending, rx));
                }
                for ev in ks.history.iter().filter(|e| e.rv > rv) {
                    if let Some(ty) = translate(&spec.filter, ev) {
                        pending.push_back(stored_event_line(ty, ev));
                    }
                }
            }
            _ => {
                let objs: Vec<Arc<Value>> = match &spec.filter.namespace {
                    Some(ns) => ks
                        .objects
                        .range((ns.clone(), String::new())..)
                        .take_while(|((n, _), _)| n == ns)
                        .map(|(_, s)| s.obj.clone())
                        .collect(),
                    None => ks.objects.values().map(|s| s.obj.clone()).collect(),
                };
                for o in objs.iter().filter(|o| spec.filter.matches(o)) {
                    pending.push_back(event_line("ADDED", o));
                }
                if spec.send_initial && spec.bookmarks {
                    pending.push_back(bookmark_line(&kind_name, &spec.api_version, current, true));
                }
            }
        }
        let cancel = inner.faults.watch_token();
        let bookmark_every = spec.bookmarks.then_some(inner.config.bookmark_interval);
        Ok(Self {
            inner,
            kind_name,
            api_version: spec.api_version,
            filter: spec.filter,
            pending,
            rx,
            last_rv: current,
            deadline: spec.timeout.map(|t| tokio::time::Instant::now() + t),
            bookmark_every,
            cancel,
            done: false,
        })
    }

    fn finished(
        inner: Arc<Inner>,
        kind_name: String,
        spec: WatchSpec,
        pending: VecDeque<Bytes>,
        rx: broadcast::Receiver<Arc<Event>>,
    ) -> Self {
        Self {
            inner,
            kind_name,
            api_version: spec.api_version,
            filter: spec.filter,
            pending,
            rx,
            last_rv: 0,
            deadline: None,
            bookmark_every: None,
            cancel: CancellationToken::new(),
            done: true,
        }
    }

    fn accept(&mut self, ev: &Event) {
        if ev.rv <= self.last_rv {
            return;
        }
        self.last_rv = ev.rv;
        if let Some(ty) = translate(&self.filter, ev) {
            self.pending.push_back(stored_event_line(ty, ev));
        }
    }

    /// Emit a bookmark: everything up to the returned resourceVersion has been sent.
    fn bookmark(&mut self) {
        let current = self.inner.lock().rv;
        loop {
            match self.rx.try_recv() {
                Ok(ev) => self.accept(&ev),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) | Err(TryRecvError::Closed) => {
                    self.done = true;
                    return;
                }
            }
        }
        let rv = current.max(self.last_rv);
        self.last_rv = rv;
        self.pending
            .push_back(bookmark_line(&self.kind_name, &self.api_version, rv, false));
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            let deadline = self.deadline;
            let bookmark = self.bookmark_every;
            tokio::select! {
                _ = self.cancel.cancelled() => { self.done = true; }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => { self.done = true; }
                _ = async {
                    match bookmark {
                        Some(b) => tokio::time::sleep(b).await,
                        None => std::future::pending().await,
                    }
                } => { self.bookmark(); }
                ev = self.rx.recv() => match ev {
                    Ok(ev) => self.accept(&ev),
                    // A watcher too slow for the channel ends its stream; the client re-watches
                    // from its last resourceVersion and the history fills the gap.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => { self.done = true; }
                },
            }
        }
    }

    /// The stream of JSON lines.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures::stream::unfold(
            self,
            |mut s| async move { s.next_chunk().await.map(|b| (b, s)) },
        )
    }
}

fn bookmark_line(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
    )
}
