//! The kube-proxy part: every Service's ClusterIP:port answered on the host by a userspace
//! TCP proxy that sends each new connection to the next Ready endpoint (round-robin), with a
//! propagation delay on endpoint changes. Established connections are never cut.

pub mod endpoints;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::netns::{self, NetConfig};
use endpoints::{Delayed, table};

/// How often the proxy recomputes its table.
const TICK: Duration = Duration::from_millis(100);
/// Connect timeout towards an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Backends of one frontend, with the round-robin cursor.
#[derive(Default)]
struct Backends {
    list: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Backends {
    fn pick(&self) -> Option<SocketAddr> {
        let list = self.list.read().expect("backends");
        if list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i])
    }
}

struct Frontend {
    backends: Arc<Backends>,
    accept: JoinHandle<()>,
}

async fn serve(listener: TcpListener, backends: Arc<Backends>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // like iptables DNAT: one endpoint per connection, no retry elsewhere; without an
        // endpoint (or when it refuses) the client gets a reset, as kube-proxy's reject
        let Some(target) = backends.pick() else {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        };
        tokio::spawn(async move {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
            match connect {
                Ok(Ok(mut server)) => {
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                _ => {
                    let _ = client.set_zero_linger();
                }
            }
        });
    }
}

/// Runs the proxy until `shutdown`; removes the ClusterIPs it added on the way out.
pub async fn run(
    net: NetConfig,
    delay: Duration,
    services: watch::Receiver<Vec<Service>>,
    slices: watch::Receiver<Vec<EndpointSlice>>,
    pods: watch::Receiver<Vec<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delayed = Delayed::new(delay);
    let mut frontends: BTreeMap<SocketAddr, Frontend> = BTreeMap::new();
    let mut ticks = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let now = std::time::Instant::now();
        let desired = table(&services.borrow(), &pods.borrow(), &slices.borrow());
        delayed.observe(now, desired);
        let effective = delayed.effective(now);
        // remove frontends that are gone (their connections stay)
        let gone: Vec<SocketAddr> = frontends
            .keys()
            .filter(|a| !effective.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(f) = frontends.remove(&addr) {
                f.accept.abort();
            }
            if !frontends.keys().any(|a| a.ip() == addr.ip()) {
                netns::remove_service_ip(&net, addr.ip()).await;
            }
        }
        for (addr, list) in effective {
            if let Some(f) = frontends.get(&addr) {
                let mut current = f.backends.list.write().expect("backends");
                if *current != list {
                    tracing::info!(frontend = %addr, backends = ?list, "endpoints changed");
                    *current = list;
                }
                continue;
            }
            match listen(&net, addr).await {
                Ok(listener) => {
                    tracing::info!(frontend = %addr, backends = ?list, "service port answered");
                    let backends = Arc::new(Backends {
                        list: RwLock::new(list),
                        next: AtomicUsize::new(0),
                    });
                    let accept = tokio::spawn(serve(listener, backends.clone()));
                    frontends.insert(addr, Frontend { backends, accept });
                }
                Err(e) => {
                    tracing::warn!(frontend = %addr, error = %e, "cannot answer service port")
                }
            }
        }
    }
    let ips: std::collections::BTreeSet<IpAddr> = frontends.keys().map(|a| a.ip()).collect();
    for f in frontends.into_values() {
        f.accept.abort();
    }
    for ip in ips {
        netns::remove_service_ip(&net, ip).await;
    }
}

async fn listen(net: &NetConfig, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    netns::add_service_ip(net, addr.ip()).await?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(1024)?)
}
