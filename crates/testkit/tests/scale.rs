//! Many objects and watchers: every watcher sees every object, and writes stay cheap.
//! `TESTKIT_SCALE=10000 cargo test -p testkit --release --test scale -- --nocapture` runs a
//! larger version and prints timings.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::{server, within};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use testkit::fixtures;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_objects_many_watchers() {
    let n: usize = std::env::var("TESTKIT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let s = server();
    let all: Api<ConfigMap> = Api::all(s.client());
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let stream = watcher(all.clone(), watcher::Config::default()).applied_objects();
        watchers.push(tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut stream = stream.boxed();
            while let Some(cm) = stream.next().await {
                let cm = cm.unwrap();
                if cm.labels().get("round").map(String::as_str) == Some("2") {
                    seen.insert(cm.name_any());
                    if seen.len() == n {
                        return;
                    }
                }
            }
        }));
    }
    let t = Instant::now();
    let client = s.client();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(4) {
                let ns = format!("ns{}", i % 100);
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                let name = format!("cm{i}");
                let mut cm = fixtures::config_map(&ns, &name, [("k", "v")]);
                cm.metadata.namespace = None;
                for round in ["1", "2"] {
                    cm.metadata.labels = Some([("round".to_string(), round.to_string())].into());
                    api.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&cm))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let writes = t.elapsed();
    for w in watchers {
        within(w).await.unwrap();
    }
    let seen = t.elapsed();
    let t2 = Instant::now();
    let listed = Api::<ConfigMap>::namespaced(s.client(), "ns7")
        .list(&ListParams::default().labels("round=2"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), n / 100 + usize::from(n % 100 > 7));
    println!(
        "{n} objects x 2 applies: writes {writes:?}, all watchers caught up {seen:?}, namespace list {:?}",
        t2.elapsed()
    );
}
