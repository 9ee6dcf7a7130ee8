//! Pod networking with iproute2: a host bridge holding the gateway address, one network
//! namespace per pod joined to it by a veth pair; the Services' ClusterIPs are added to the
//! bridge as /32 addresses so the node answers them, from the host and from the pods (a
//! dummy interface would do too, but its kernel module is not always there).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use tokio::process::Command;

/// Names and addresses of the node's network (distinct per node on one machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Bridge name (at most 15 characters).
    pub bridge: String,
    /// Prefix of network namespace and veth names (at most 5 characters).
    pub prefix: String,
    /// Pod network address, e.g. 10.244.0.0.
    pub subnet: Ipv4Addr,
    /// Pod network prefix length, e.g. 16.
    pub prefix_len: u8,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: "lnbr0".into(),
            prefix: "ln".into(),
            subnet: Ipv4Addr::new(10, 244, 0, 0),
            prefix_len: 16,
        }
    }
}

impl NetConfig {
    /// The bridge's MAC address: locally administered, `02:42` and the gateway's IPv4 bytes.
    pub fn gateway_mac(&self) -> String {
        let [a, b, c, d] = self.gateway().octets();
        format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    }

    /// The gateway: the subnet's first address, on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }

    /// Network namespace name of a pod (from its uid).
    pub fn netns_name(&self, uid: &str) -> String {
        format!("{}-{}", self.prefix, short_id(uid))
    }

    /// Host-side veth name of a pod.
    pub fn veth_name(&self, uid: &str) -> String {
        format!("{}v{}", self.prefix, short_id(uid))
    }
}

/// Eight hex characters of a uid.
pub fn short_id(uid: &str) -> String {
    let hex: String = uid.chars().filter(char::is_ascii_hexdigit).collect();
    let hex = if hex.len() >= 8 {
        hex
    } else {
        format!("{hex:0>8}")
    };
    hex[hex.len() - 8..].to_lowercase()
}

/// Pod IP allocation in the subnet (pure): the next free address after the one given last,
/// wrapping, as the host-local IPAM of a real node does. A released address is not handed out
/// again at once: the host's neighbour (ARP) entry for it still names the old pod's veth, and a
/// new pod on the same address was unreachable for seconds (new connections to it timed out
/// while the entry went stale), which an immediate reuse turned into failed client queries.
#[derive(Debug, Clone)]
pub struct IpPool {
    first: u32,
    last: u32,
    used: BTreeSet<u32>,
    /// The address given out last.
    cursor: Option<u32>,
}

impl IpPool {
    /// A pool over `cfg`'s subnet, without the network, gateway and broadcast addresses.
    pub fn new(cfg: &NetConfig) -> Self {
        let base = u32::from(cfg.subnet);
        let size = 1u64 << (32 - u32::from(cfg.prefix_len.min(30)));
        IpPool {
            first: base + 2,
            last: (u64::from(base) + size - 2) as u32,
            used: BTreeSet::new(),
            cursor: None,
        }
    }

    /// Takes a free address: the first free one after the last given, wrapping around.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let start = match self.cursor {
            Some(c) if c < self.last => c + 1,
            _ => self.first,
        };
        let ip = (start..=self.last)
            .chain(self.first..start)
            .find(|ip| !self.used.contains(ip))?;
        self.used.insert(ip);
        self.cursor = Some(ip);
        Some(Ipv4Addr::from(ip))
    }

    /// Gives an address back.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }
}

/// Runs `ip <args>`; an error carries its stderr.
pub async fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Like [`ip`], but an "exists" answer counts as success.
async fn ip_idempotent(args: &[&str]) -> anyhow::Result<()> {
    match ip(args).await {
        Err(e)
            if ["File exists", "already assigned"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Creates the bridge with the gateway address and a fixed MAC address.
///
/// A Linux bridge without an address of its own takes the lowest MAC of its ports, so adding
/// or removing a pod's veth could change the gateway's MAC under every other pod. Pods that
/// still had the old MAC in their neighbour table then sent into the void until the entry went
/// stale: one pod at a time stopped reaching PostgreSQL and answering clients for up to ~40 s,
/// now and then, right after a sibling pod came or went (seen as "connect timed out" in the
/// under-load scenario). A real node's gateway keeps its MAC; so does this one.
pub async fn setup_host(cfg: &NetConfig) -> anyhow::Result<()> {
    let gw = format!("{}/{}", cfg.gateway(), cfg.prefix_len);
    ip_idempotent(&["link", "add", &cfg.bridge, "type", "bridge"]).await?;
    ip(&["link", "set", &cfg.bridge, "address", &cfg.gateway_mac()]).await?;
    ip_idempotent(&["addr", "add", &gw, "dev", &cfg.bridge]).await?;
    ip(&["link", "set", &cfg.bridge, "up"]).await
}

/// Removes the bridge (with its addresses).
pub async fn teardown_host(cfg: &NetConfig) {
    let _ = ip(&["link", "del", &cfg.bridge]).await;
}

/// Creates a pod's network namespace with `eth0` at `addr` and a default route via the
/// bridge.
pub async fn add_pod(cfg: &NetConfig, uid: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    let ns = cfg.netns_name(uid);
    let veth = cfg.veth_name(uid);
    let cidr = format!("{addr}/{}", cfg.prefix_len);
    let gw = cfg.gateway().to_string();
    remove_pod(cfg, uid).await;
    ip(&["netns", "add", &ns]).await?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])
    .await?;
    ip(&["link", "set", &veth, "master", &cfg.bridge, "up"]).await?;
    ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]).await?;
    ip(&["-n", &ns, "link", "set", "lo", "up"]).await?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"]).await?;
    ip(&["-n", &ns, "route", "add", "default", "via", &gw]).await?;
    // An address used before (after a wrap) may still have a neighbour entry naming the old
    // pod's veth: forget it, so the first packet asks for the new one.
    let _ = ip(&[
        "neigh",
        "flush",
        "to",
        &addr.to_string(),
        "dev",
        &cfg.bridge,
    ])
    .await;
    Ok(())
}

/// Removes a pod's network namespace (its veth pair goes with it).
pub async fn remove_pod(cfg: &NetConfig, uid: &str) {
    let _ = ip(&["netns", "del", &cfg.netns_name(uid)]).await;
    let _ = ip(&["link", "del", &cfg.veth_name(uid)]).await;
}

/// Answers `addr` on the host (a ClusterIP).
pub async fn add_service_ip(cfg: &NetConfig, addr: std::net::IpAddr) -> anyhow::Result<()> {
    ip_idempotent(&["addr", "add", &format!("{addr}/32"), "dev", &cfg.bridge]).await
}

/// Stops answering `addr`.
pub async fn remove_service_ip(cfg: &NetConfig, addr: std::net::IpAddr) {
    let _ = ip(&["addr", "del", &format!("{addr}/32"), "dev", &cfg.bridge]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_mac_is_fixed_and_locally_administered() {
        assert_eq!(NetConfig::default().gateway_mac(), "02:42:0a:f4:00:01");
    }

    #[test]
    fn names_fit_linux_limits_and_differ_per_pod() {
        let cfg = NetConfig::default();
        let a = cfg.veth_name("0f8c2a9e-1111-2222-3333-444455556666");
        let b = cfg.veth_name("0f8c2a9e-1111-2222-3333-444455556667");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
        assert_eq!(cfg.netns_name("abc"), "ln-00000abc");
    }

    #[test]
    fn pool_skips_network_and_gateway_and_reuses_released_addresses_last() {
        let cfg = NetConfig {
            subnet: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 30,
            ..NetConfig::default()
        };
        let mut pool = IpPool::new(&cfg);
        let a = pool.allocate().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(pool.allocate(), None, "a /30 has one pod address");
        pool.release(a);
        assert_eq!(pool.allocate(), Some(a));

        // A replacement pod does not get the address its predecessor just gave back.
        let cfg = NetConfig {
            subnet: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 29,
            ..NetConfig::default()
        };
        let mut pool = IpPool::new(&cfg);
        let first: Vec<Ipv4Addr> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(first[0], Ipv4Addr::new(10, 9, 0, 2));
        pool.release(first[0]);
        assert_eq!(pool.allocate(), Some(Ipv4Addr::new(10, 9, 0, 5)));
        assert_eq!(pool.allocate(), Some(Ipv4Addr::new(10, 9, 0, 6)));
        assert_eq!(pool.allocate(), Some(first[0]), "wraps to the free one");
        assert_eq!(pool.allocate(), None);
    }
}
