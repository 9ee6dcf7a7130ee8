//! Runs the e2e load client against any PostgreSQL endpoint for a while and prints one
//! summary line per interval, for trying an endpoint by hand:
//!
//! ```sh
//! PGUSER=postgres PGPASSWORD=... cargo run -p e2e --example load -- 10.96.0.12:9999 [seconds] [rate]
//! ```

use std::time::Duration;

use e2e::load::{LoadClient, LoadConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: load host:port [seconds] [rate]"))?;
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let rate: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(50.0);
    let (host, port) = LoadConfig::split_addr(&addr)?;
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let mut config = LoadConfig::new(
        &host,
        port,
        &env("PGUSER", "postgres"),
        &env("PGPASSWORD", ""),
        &env("PGDATABASE", "postgres"),
    );
    config.rate = rate;
    config.max_duration = Duration::from_secs(seconds + 10);
    let load = LoadClient::start(config);
    for second in 0..seconds {
        load.start_window(&format!("second {second}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        load.stop_window().await;
    }
    load.shutdown().await;
    Ok(())
}
