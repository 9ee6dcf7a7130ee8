//! Run a testkit API server (with the pgpool CRDs and a simulated kubelet) on 127.0.0.1 for
//! local demos: the operators' binaries can be pointed at it with the printed kubeconfig.
//!
//! Usage: `testkit-apiserver [--kubeconfig <path>] [--no-kubelet] [--latency]
//! [--read-latency-ms N] [--write-latency-ms N] [--watch-latency-ms N]`; stops on Ctrl-C.
//!
//! `--latency` turns on the latency model with the figures of a real kube-apiserver
//! (`testkit::Latency::kube_apiserver`: reads 2 ms, writes 15 ms, watch events 3 ms); the
//! `--*-latency-ms` flags set one delay each (and turn the model on).

use std::time::Duration;

use testkit::{Kubelet, KubeletConfig, Latency, ServerConfig, TestServer};

const USAGE: &str = "usage: testkit-apiserver [--kubeconfig <path>] [--no-kubelet] [--latency] \
                     [--read-latency-ms N] [--write-latency-ms N] [--watch-latency-ms N]";

fn millis(flag: &str, value: Option<String>) -> anyhow::Result<Duration> {
    let v = value.ok_or_else(|| anyhow::anyhow!("{flag} needs a value; {USAGE}"))?;
    let ms: u64 = v
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {v:?}: not a whole number of milliseconds"))?;
    Ok(Duration::from_millis(ms))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut kubeconfig_out = None;
    let mut kubelet = true;
    let mut latency: Option<Latency> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => kubeconfig_out = args.next(),
            "--no-kubelet" => kubelet = false,
            "--latency" => {
                latency.get_or_insert_with(Latency::kube_apiserver);
            }
            "--read-latency-ms" => {
                latency.get_or_insert_with(Latency::kube_apiserver).read = millis(&a, args.next())?;
            }
            "--write-latency-ms" => {
                latency.get_or_insert_with(Latency::kube_apiserver).write =
                    millis(&a, args.next())?;
            }
            "--watch-latency-ms" => {
                latency
                    .get_or_insert_with(Latency::kube_apiserver)
                    .watch_event = millis(&a, args.next())?;
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let latency = latency.unwrap_or(Latency::OFF);
    let server = TestServer::with_config(ServerConfig {
        latency,
        ..ServerConfig::default()
    });
    let listening = server.listen().await?;
    let path = match kubeconfig_out {
        Some(p) => {
            std::fs::copy(listening.kubeconfig_path(), &p)?;
            std::path::PathBuf::from(p)
        }
        None => listening.kubeconfig_path().to_path_buf(),
    };
    let _kubelet =
        kubelet.then(|| Kubelet::start(server.client_as("kubelet"), KubeletConfig::default()));
    println!("listening on {}", listening.url());
    if !latency.is_off() {
        println!(
            "latency: reads {:?}, writes {:?}, watch events {:?}",
            latency.read, latency.write, latency.watch_event
        );
    }
    println!("KUBECONFIG={}", path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
