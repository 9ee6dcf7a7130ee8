//! Building the Kubernetes client and checking that the API server answers.

use std::time::Duration;

use kube::{Client, Config};

use crate::error::Error;

/// How long [`connect`] waits for the API server's version by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a client from the environment (`KUBECONFIG`, `~/.kube/config`, else the
/// in-cluster service account), sending `user_agent` (e.g. `pgpool-provisioner/0.1.0`) so that
/// audit logs tell the operators apart, and checks that the API server answers
/// `GET /version` within `timeout`.
///
/// Errors are one line, name the API server URL that was tried and say what to do.
pub async fn connect(timeout: Duration, user_agent: &str) -> Result<Client, Error> {
    let mut config = Config::infer()
        .await
        .map_err(|e| Error::KubeConfig(one_line(&e.to_string())))?;
    if let Ok(value) = http::HeaderValue::from_str(user_agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| Error::Unreachable {
        url: url.clone(),
        reason: root_cause(&e),
    })?;
    check(&client, &url, timeout).await?;
    Ok(client)
}

/// Checks that the API server behind `client` answers `GET /version` within `timeout`.
/// `url` is only used in the error message.
pub async fn check(client: &Client, url: &str, timeout: Duration) -> Result<(), Error> {
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            tracing::info!(
                api_server = url,
                version = %version.git_version,
                "connected to the Kubernetes API server"
            );
            Ok(())
        }
        Ok(Err(kube::Error::Api(status))) => Err(Error::Rejected {
            url: url.to_string(),
            reason: one_line(&format!("{} ({})", status.message, status.code)),
        }),
        Ok(Err(e)) => Err(Error::Unreachable {
            url: url.to_string(),
            reason: root_cause(&e),
        }),
        Err(_) => Err(Error::Unreachable {
            url: url.to_string(),
            reason: format!("no answer within {} s", timeout.as_secs()),
        }),
    }
}

/// The innermost cause of an error chain (e.g. "Connection refused (os error 111)"),
/// which is what a person needs to see; the outer layers only say "client error".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    one_line(&current.to_string())
}

/// Joins the lines of a message so that it prints as one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn root_cause_is_the_innermost_error() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused\n(os error 111)",
        ));
        assert_eq!(root_cause(&e), "Connection refused (os error 111)");
    }
}
