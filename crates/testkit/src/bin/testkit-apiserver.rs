//! Run a testkit API server (with a simulated kubelet) on 127.0.0.1 for local demos: the
//! operators' binaries can be pointed at it with the printed kubeconfig.
//!
//! Usage: `testkit-apiserver [--kubeconfig <path>] [--crds <path>]... [--no-kubelet]
//! [--latency] [--read-latency-ms N] [--write-latency-ms N] [--watch-latency-ms N]`; stops on
//! Ctrl-C.
//!
//! `--crds` serves the CustomResourceDefinitions in a YAML file (several documents allowed) or
//! in every `*.yaml`/`*.yml` file of a directory, e.g. a chart's `crds/` directory, from the
//! start. It may be given more than once.
//!
//! `--latency` turns on the latency model with the figures of a real kube-apiserver
//! (`testkit::Latency::kube_apiserver`: reads 2 ms, writes 15 ms, watch events 3 ms); the
//! `--*-latency-ms` flags set one delay each (and turn the model on).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use testkit::{Kubelet, KubeletConfig, Latency, ServerConfig, TestServer};

const USAGE: &str = "usage: testkit-apiserver [--kubeconfig <path>] [--crds <path>]... \
                     [--no-kubelet] [--latency] [--read-latency-ms N] [--write-latency-ms N] \
                     [--watch-latency-ms N]";

/// The CRDs in `path`: a YAML file (several documents allowed) or a directory of them.
fn load_crds(path: &Path) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("reading {path:?}"))? {
            let p = entry?.path();
            if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file:?}"))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(doc).with_context(|| format!("parsing {file:?}"))?;
            if value.is_null() {
                continue;
            }
            let crd = serde_yaml::from_value(value)
                .with_context(|| format!("{file:?}: not a CustomResourceDefinition"))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

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
    let mut crds = Vec::new();
    let mut latency: Option<Latency> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => kubeconfig_out = args.next(),
            "--crds" => {
                let path = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--crds needs a path; {USAGE}"))?;
                crds.extend(load_crds(Path::new(&path))?);
            }
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
        crds,
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
