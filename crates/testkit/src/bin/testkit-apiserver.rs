//! Run a testkit API server (with the pgpool CRDs and a simulated kubelet) on 127.0.0.1 for
//! local demos: the operators' binaries can be pointed at it with the printed kubeconfig.
//!
//! Usage: `testkit-apiserver [--kubeconfig <path>] [--no-kubelet]`; stops on Ctrl-C.

use testkit::{Kubelet, KubeletConfig, TestServer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut kubeconfig_out = None;
    let mut kubelet = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kubeconfig" => kubeconfig_out = args.next(),
            "--no-kubelet" => kubelet = false,
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: testkit-apiserver [--kubeconfig <path>] [--no-kubelet]"
            ),
        }
    }
    let server = TestServer::new();
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
    println!("KUBECONFIG={}", path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
