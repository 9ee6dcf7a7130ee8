//! Static facts about an operator binary.

/// Static facts about an operator binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorInfo {
    /// Binary name, e.g. `pgpool-provisioner`; used in logs, metrics labels, error
    /// lines and as the default event reporter.
    pub name: &'static str,
    /// Version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// Default name of the leader-election Lease.
    pub default_lease: &'static str,
}
