//! The auth Secret (pcp credentials, when the provisioner manages it) and the config Secret
//! (the rendered Pgpool-II configuration).

use k8s_openapi::api::core::v1::Secret;
use pgpool_api::{Pgpool, names};

use super::common::{KEY_MONITOR_PASSWORD, KEY_MONITOR_USERNAME, meta};
use crate::pgpool::validate::{AuthPlan, Plan, string_data};

/// The basic-auth Secret with the pcp credentials, when the provisioner manages it.
pub fn auth_secret(plan: &Plan) -> Option<Secret> {
    let AuthPlan::Managed {
        name,
        username,
        password,
        ..
    } = &plan.auth
    else {
        return None;
    };
    Some(Secret {
        metadata: meta(plan, name.clone()),
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(string_data([
            ("username", username.as_str()),
            ("password", password.as_str()),
        ])),
        ..Secret::default()
    })
}

/// The config Secret: the rendered files and the pool key (plus the exporter's credentials
/// when monitoring).
pub fn config_secret(pgpool: &Pgpool, plan: &Plan) -> Secret {
    let mut data = plan.rendered.secret_data();
    if pgpool.spec.monitoring_enabled() {
        data.insert(KEY_MONITOR_USERNAME.into(), plan.backend_user.clone());
        data.insert(KEY_MONITOR_PASSWORD.into(), plan.backend_password.clone());
    }
    if let Some(ca) = plan.tls.as_ref().and_then(|t| t.backend_ca.clone()) {
        data.insert(super::tls_secrets::KEY_BACKEND_CA.into(), ca);
    }
    Secret {
        metadata: meta(plan, names::config_secret(&plan.name)),
        type_: Some("Opaque".into()),
        data: Some(string_data(
            data.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )),
        ..Secret::default()
    }
}
