//! The pod bridge keeps its MAC address while pods come and go (root only): a bridge that
//! follows its lowest port MAC changed the gateway's MAC under running pods, which then could
//! not reach the host for up to ~40 s.

mod common;

use std::net::Ipv4Addr;

use common::*;
use local_node::{NetConfig, netns};

fn mac(dev: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn the_gateway_keeps_its_mac_while_pods_come_and_go() {
    if !root_or_skip("the_gateway_keeps_its_mac_while_pods_come_and_go") {
        return;
    }
    let cfg = NetConfig {
        bridge: "lnmacbr".into(),
        prefix: "lnm".into(),
        subnet: Ipv4Addr::new(10, 251, 7, 0),
        prefix_len: 24,
    };
    netns::teardown_host(&cfg).await;
    netns::setup_host(&cfg).await.unwrap();
    let fixed = mac(&cfg.bridge);
    assert_eq!(fixed, cfg.gateway_mac());
    // enough pods that some veth gets a MAC below the bridge's whatever the random draw
    let uids: Vec<String> = (0..6).map(|i| format!("0000000{i}")).collect();
    for (i, uid) in uids.iter().enumerate() {
        let addr = Ipv4Addr::new(10, 251, 7, 10 + i as u8);
        netns::add_pod(&cfg, uid, addr).await.unwrap();
        assert_eq!(mac(&cfg.bridge), fixed, "after adding pod {i}");
    }
    for (i, uid) in uids.iter().enumerate() {
        netns::remove_pod(&cfg, uid).await;
        assert_eq!(mac(&cfg.bridge), fixed, "after removing pod {i}");
    }
    netns::teardown_host(&cfg).await;
}
