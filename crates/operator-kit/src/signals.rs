//! SIGTERM and SIGINT turned into the shutdown token, once for the whole process.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::info::OperatorInfo;

/// Cancels `token` on the first SIGTERM or SIGINT; exits the process at once on a second.
pub(crate) fn spawn_signal_listener(
    info: OperatorInfo,
    token: CancellationToken,
) -> Result<JoinHandle<()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Signals(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Signals(e.to_string()))?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        token.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("{}: {name} again: exiting at once", info.name);
        std::process::exit(1);
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const INFO: OperatorInfo = OperatorInfo {
        name: "signals-test",
        version: "0.0.0",
        default_lease: "signals-test-leader",
    };

    #[tokio::test]
    async fn first_sigterm_cancels_the_token() {
        let token = CancellationToken::new();
        let handle = spawn_signal_listener(INFO, token.clone()).expect("signals");
        assert!(!token.is_cancelled());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("SIGTERM cancels the token");
        // Do not let a second signal exit the test process.
        handle.abort();
    }
}
