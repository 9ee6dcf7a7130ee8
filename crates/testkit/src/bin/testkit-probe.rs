//! A minimal kube-rs client process: lists ConfigMaps in a namespace (printing
//! `LIST <names>`), then watches until a ConfigMap with the given name appears (printing
//! `SEEN <name>`). Uses the kubeconfig from `KUBECONFIG`. Testkit's tests run it against a
//! listening `TestServer` to show that separate processes can use the server.
//!
//! Usage: `testkit-probe <namespace> <name>`

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(ns), Some(want)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: testkit-probe <namespace> <name>");
    };
    let client = Client::try_default().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let list = api.list(&ListParams::default()).await?;
    let names: Vec<String> = list.items.iter().map(|c| c.name_any()).collect();
    println!("LIST {}", names.join(","));
    let stream = watcher(api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut stream = stream.into_stream();
    while let Some(cm) = stream.try_next().await? {
        if cm.name_any() == want {
            println!("SEEN {want}");
            return Ok(());
        }
    }
    anyhow::bail!("watch ended before {want} appeared")
}
