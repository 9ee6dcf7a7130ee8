//! A latency model: each request waits before it is answered (reads and writes apart), and
//! each watch event reaches its watcher some time after the change that caused it.
//!
//! Off by default ([`Latency::OFF`]): the controller tests want microsecond round trips. The
//! benchmark turns it on with [`Latency::kube_apiserver`], whose figures were measured on a
//! real kube-apiserver 1.36 with etcd on the same machine (one write with its watch event
//! took 10-25 ms there; an UpdateVersion of 3 replicas spent about 0.33 s per pod):
//!
//! | what | default | where it comes from |
//! |---|---:|---|
//! | read (get, list, watch set-up) | 2 ms | served from the API server's watch cache |
//! | write (create, update, patch, apply, delete, eviction) | 15 ms | an etcd commit (fsync) on a local disk plus admission |
//! | watch event | 3 ms | from the commit to the watcher: the watch cache, then encoding and the HTTP/2 stream |
//!
//! A write takes effect at the end of its wait (the object changes, then the answer goes
//! out), so its watch event reaches watchers `write + watch_event` after the request was sent.
//! The waits of concurrent requests overlap, as in a real server: the model adds round-trip
//! time, not a throughput limit.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::log::Verb;

/// Delays of the latency model. See the module documentation for the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Latency {
    /// Wait before answering a get, list or watch request.
    pub read: Duration,
    /// Wait before carrying out and answering a request that can change state.
    pub write: Duration,
    /// Delay between a change and the delivery of its watch event to each watcher.
    pub watch_event: Duration,
}

impl Latency {
    /// No latency at all (the default of a [`crate::TestServer`]).
    pub const OFF: Self = Self {
        read: Duration::ZERO,
        write: Duration::ZERO,
        watch_event: Duration::ZERO,
    };

    /// A kube-apiserver 1.36 with etcd on the same machine: reads 2 ms, writes 15 ms, watch
    /// events 3 ms.
    pub const fn kube_apiserver() -> Self {
        Self {
            read: Duration::from_millis(2),
            write: Duration::from_millis(15),
            watch_event: Duration::from_millis(3),
        }
    }

    /// True when every delay is zero.
    pub fn is_off(&self) -> bool {
        self.read.is_zero() && self.write.is_zero() && self.watch_event.is_zero()
    }

    /// How long a request with this verb waits before it is carried out.
    pub fn request_delay(&self, verb: Verb) -> Duration {
        if verb.is_write() {
            self.write
        } else {
            self.read
        }
    }

    /// Wait as long as a request with this verb must.
    pub(crate) async fn before(&self, verb: Verb) {
        let d = self.request_delay(verb);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Deliver each chunk of a watch stream `watch_event` after the server produced it. The
    /// delays overlap (a burst of events arrives as a burst, `watch_event` later), and the
    /// order is kept.
    pub(crate) fn delay_events<S>(&self, events: S) -> BoxStream<'static, Bytes>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let delay = self.watch_event;
        if delay.is_zero() {
            return events.boxed();
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Take events off the server's stream as they happen, stamped with their due time;
        // stop when the watcher has gone.
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    next = events.next() => match next {
                        Some(chunk) => {
                            let due = tokio::time::Instant::now() + delay;
                            if tx.send((due, chunk)).is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            let (due, chunk) = rx.recv().await?;
            tokio::time::sleep_until(due).await;
            Some((chunk, rx))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_wait_their_own_delay() {
        let l = Latency::kube_apiserver();
        assert_eq!(l.request_delay(Verb::Get), Duration::from_millis(2));
        assert_eq!(l.request_delay(Verb::Watch), Duration::from_millis(2));
        assert_eq!(l.request_delay(Verb::Create), Duration::from_millis(15));
        assert_eq!(l.request_delay(Verb::Apply), Duration::from_millis(15));
        assert!(Latency::default().is_off());
        assert!(!l.is_off());
    }

    #[tokio::test]
    async fn events_keep_their_order_and_arrive_late() {
        let l = Latency {
            watch_event: Duration::from_millis(30),
            ..Latency::OFF
        };
        let start = tokio::time::Instant::now();
        let chunks = futures::stream::iter([b"a" as &[u8], b"b", b"c"].map(Bytes::from_static));
        let got: Vec<Bytes> = l.delay_events(chunks).collect().await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(got, [b"a" as &[u8], b"b", b"c"].map(Bytes::from_static));
    }
}
