//! KubeDB-compatible API types for the pgpool operators (DESIGN.md §3), and what both
//! operators share about them: names and labels, conditions and phases, update constraints.

// kube-derive's `printcolumn(...)` attributes repeat keys by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod appbinding;
pub mod conditions;
pub mod constraints;
pub mod crds;
pub mod duration;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod names;
pub mod ops;
pub mod ops_config;
pub mod ops_scaling;
pub mod ops_tls;
pub mod petset;
pub mod pgpool;
pub mod pgpool_monitor;
pub mod pgpool_names;
pub mod pgpool_overrides;
pub mod pgpool_tls;
pub mod quantity;
pub mod version;

pub use appbinding::{AppBinding, AppBindingSpec};
pub use ops::{
    OpsRequestPhase, OpsRequestType, PgpoolOpsRequest, PgpoolOpsRequestSpec, PgpoolOpsRequestStatus,
};
pub use petset::{PetSet, PetSetSpec, PetSetStatus};
pub use pgpool::{Pgpool, PgpoolPhase, PgpoolSpec, PgpoolStatus};
pub use version::{PgpoolVersion, PgpoolVersionSpec};
