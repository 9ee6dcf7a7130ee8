//! Leader election on a `coordination.k8s.io/v1` Lease, with `kube-lease-manager`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// How long releasing the Lease on the way out may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica's view of the leader Lease.
pub(crate) struct LeaderElection {
    manager: LeaseManager,
    client: Client,
    namespace: String,
    name: String,
    identity: String,
}

impl LeaderElection {
    /// Prepares the Lease `namespace/name` (created when missing) for `identity`.
    pub(crate) async fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration_seconds: u64,
        grace_seconds: u64,
    ) -> Result<Self, Error> {
        if grace_seconds >= duration_seconds {
            return Err(Error::LeaderElection {
                namespace: namespace.to_string(),
                name: name.to_string(),
                reason: format!(
                    "--lease-renew-grace-seconds ({grace_seconds}) must be less than --lease-duration-seconds ({duration_seconds})"
                ),
            });
        }
        let manager = LeaseManagerBuilder::new(client.clone(), name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_field_manager(format!("pgpool-operator-lease-{identity}"))
            .with_duration(duration_seconds)
            .with_grace(grace_seconds)
            .build()
            .await
            .map_err(|e| Error::LeaderElection {
                namespace: namespace.to_string(),
                name: name.to_string(),
                reason: crate::client::one_line(&e.to_string()),
            })?;
        Ok(Self {
            manager,
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
        })
    }

    /// `namespace/name` of the Lease.
    pub(crate) fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Waits until this replica holds the Lease (`Ok(true)`) or `shutdown` is cancelled
    /// (`Ok(false)`). API errors are logged and retried with a back-off.
    pub(crate) async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_secs(1);
        let mut announced = false;
        loop {
            if !announced {
                announced = true;
                let holder = self.holder().await;
                tracing::info!(
                    lease = %self.lease(),
                    identity = %self.identity,
                    holder = holder.as_deref().unwrap_or("<none>"),
                    "not leader: waiting for the Lease; controllers start once this replica holds it"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                res = self.manager.changed() => match res {
                    Ok(true) => return true,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(lease = %self.lease(), %error, retry_in_s = backoff.as_secs(), "leader election failed; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return false,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                },
            }
        }
    }

    /// While leader: keeps renewing the Lease and returns the reason once leadership is
    /// lost (another replica holds it, or a renewal failed so that this replica can no
    /// longer be sure it holds it).
    pub(crate) async fn lost(&self) -> String {
        loop {
            match self.manager.changed().await {
                Ok(true) => continue,
                Ok(false) => return "another replica holds the Lease".to_string(),
                Err(e) => {
                    return format!(
                        "cannot renew the Lease: {}",
                        crate::client::one_line(&e.to_string())
                    );
                }
            }
        }
    }

    /// Releases the Lease if this replica holds it, so that a standby can take over
    /// without waiting for it to expire. Errors are logged.
    pub(crate) async fn release(&self) {
        match tokio::time::timeout(RELEASE_TIMEOUT, self.manager.release()).await {
            Ok(Ok(())) => tracing::info!(lease = %self.lease(), "released the Lease"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %self.lease(), %error, "cannot release the Lease")
            }
            Err(_) => tracing::warn!(
                lease = %self.lease(),
                "cannot release the Lease: no answer within {} s",
                RELEASE_TIMEOUT.as_secs()
            ),
        }
    }

    async fn holder(&self) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(&self.name).await {
            Ok(lease) => lease.and_then(|l| l.spec).and_then(|s| s.holder_identity),
            Err(_) => None,
        }
    }
}
