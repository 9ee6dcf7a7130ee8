//! The pcp credentials: the auth Secret the provisioner manages or the user's, and whose
//! Secret is whose.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use pgpool_api::{Pgpool, names};

use super::plan::{AuthPlan, Generator, Problem, reason};
use crate::pgpool::dereference::Observed;

/// Is the Secret one this provisioner made for Pgpool `name` (by its labels)?
pub fn is_ours(secret: &Secret, name: &str) -> bool {
    let labels = secret.labels();
    labels.get(names::LABEL_INSTANCE).map(String::as_str) == Some(name)
        && labels.get(names::LABEL_NAME).map(String::as_str) == Some(names::LABEL_NAME_VALUE)
}

pub(super) fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    let bytes: &ByteString = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub(super) fn auth_plan(
    pgpool: &Pgpool,
    observed: &Observed,
    generator: &mut dyn Generator,
) -> Result<AuthPlan, Problem> {
    let name = pgpool.auth_secret_name();
    let ns = pgpool.namespace().unwrap_or_default();
    let external = pgpool.spec.auth_externally_managed();
    match &observed.children.auth_secret {
        Some(secret) => {
            let password = secret_string(secret, "password").filter(|p| !p.is_empty());
            let Some(password) = password else {
                return Err(Problem::new(
                    reason::AUTH_SECRET_INVALID,
                    format!(
                        "auth Secret {ns}/{name} has no password key; add keys username and password to it"
                    ),
                ));
            };
            let username = secret_string(secret, "username")
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| names::PCP_USER.to_string());
            if external || !is_ours(secret, &pgpool.name_any()) {
                Ok(AuthPlan::UserSupplied { name })
            } else {
                Ok(AuthPlan::Managed {
                    name,
                    username,
                    password,
                    exists: true,
                })
            }
        }
        None if external => Err(Problem::new(
            reason::AUTH_SECRET_NOT_FOUND,
            format!(
                "auth Secret {ns}/{name} not found; spec.authSecret.externallyManaged is true, so create it with keys username and password"
            ),
        )),
        None => Ok(AuthPlan::Managed {
            name,
            username: names::PCP_USER.to_string(),
            password: generator.password(),
            exists: false,
        }),
    }
}

/// The pcp credentials a plan implies: from the plan, or from the user's Secret.
pub(super) fn pcp_credentials(auth: &AuthPlan, observed: &Observed) -> (String, String) {
    match auth {
        AuthPlan::Managed {
            username, password, ..
        } => (username.clone(), password.clone()),
        AuthPlan::UserSupplied { .. } => {
            let secret = observed.children.auth_secret.as_ref();
            let user = secret
                .and_then(|s| secret_string(s, "username"))
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| names::PCP_USER.to_string());
            let password = secret
                .and_then(|s| secret_string(s, "password"))
                .unwrap_or_default();
            (user, password)
        }
    }
}

/// Secret data from strings.
pub fn string_data<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, ByteString> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}
