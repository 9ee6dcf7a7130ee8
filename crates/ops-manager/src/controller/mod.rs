//! The PgpoolOpsRequest controller: reads the cluster, asks [`crate::plan`] what to do, does
//! it, and records each step as a condition on the request before and after acting, so that
//! a restarted ops-manager continues from the conditions and the cluster's objects alone.
//!
//! The pieces, in the order a request meets them: [`wiring`] (the watches and the shared
//! request cache) with [`mappers`]; [`driver`] (load, pick the next step, dispatch) and
//! [`queue`] (wait for the Pgpool's slot, start); one file per step ([`validate`], [`pause`],
//! [`update_petsets`], [`restart_pods`], [`update_database`], [`finish`] with the Resume step
//! and failures, [`rollback`]). They stand on [`run`] (the request's conditions, status
//! writes, deadlines and events) and [`cluster`] (the objects the steps act on), which use
//! `operator_kit::api` (status codes, get-modify-replace) and `operator_kit::finalizers`.
//! [`retry`] holds the error and eviction backoffs (`operator_kit::backoff`). The scaling
//! types add [`horizontal_scale`], [`update_replicas`], [`update_petset_resources`],
//! [`update_resources`] and [`rollback_scaling`], with their writes in [`cluster_scaling`].
//! Reconfigure and RotateAuth add [`update_configuration`], [`update_credential`],
//! [`update_petset_config`] and [`rollback_config`] ([`config_objects`], [`config_checks`]);
//! ReconfigureTLS adds [`update_tls`], [`sync_certificates`], [`update_petset_tls`] and
//! [`rollback_tls`].

mod cluster;
mod cluster_scaling;
mod config_checks;
mod config_objects;
mod context;
mod driver;
mod error;
mod finish;
mod horizontal_scale;
mod mappers;
mod pause;
mod queue;
mod restart_pods;
mod retry;
mod rollback;
mod rollback_config;
mod rollback_scaling;
mod rollback_tls;
mod run;
mod sync_certificates;
mod update_configuration;
mod update_credential;
mod update_database;
mod update_petset_config;
mod update_petset_resources;
mod update_petset_tls;
mod update_petsets;
mod update_replicas;
mod update_resources;
mod update_tls;
mod validate;
mod wiring;

pub(crate) use wiring::run;
