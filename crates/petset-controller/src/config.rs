//! The controller's settings and field manager.

/// Field manager (and event reporter) of every write the controller makes.
pub const FIELD_MANAGER: &str = "petset-controller";

/// Settings of [`crate::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PetSetConfig {
    /// Namespace to watch; `None` for all namespaces.
    pub namespace: Option<String>,
    /// PetSets reconciled at the same time; 0 means no limit.
    pub concurrency: u16,
    /// How often a PetSet is looked at again when nothing happens (a safety net: watches
    /// trigger every reconcile; a look at a settled PetSet reads only the caches).
    pub resync: std::time::Duration,
}

impl Default for PetSetConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 0,
            resync: std::time::Duration::from_secs(300),
        }
    }
}
