//! Reconfigure and RotateAuth decisions (pure): the Pgpool spec change a Reconfigure makes and
//! its checks (the provisioner's own, from `pgpool-config`), the checks of a RotateAuth, and
//! whether the provisioner has rendered the change into the config Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use pgpool_api::ops_config::{APPLY_CONFIG_FILE, ReconfigurationSpec};
use pgpool_api::{Pgpool, PgpoolOpsRequest, names};
use serde_json::{Value, json};

/// Request annotation holding the Pgpool spec fields (or auth Secret keys) a request changed,
/// as they were before; the rollback puts them back.
pub const ANNOTATION_PREVIOUS: &str = "ops.kubedb.com/previous-configuration";
/// Auth-Secret annotation naming the request (by UID) that wrote the current password.
pub const ANNOTATION_ROTATED_BY: &str = "ops.kubedb.com/rotated-by";
/// Auth-Secret key holding the username before the last rotation (KubeDB's name).
pub const KEY_PREVIOUS_USERNAME: &str = "username.prev";
/// Auth-Secret key holding the password before the last rotation (KubeDB's name).
pub const KEY_PREVIOUS_PASSWORD: &str = "password.prev";

/// A string value of a Secret.
pub fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The Secret a Reconfigure with `applyConfig` writes: named after the Pgpool and the request,
/// so that a restarted request finds its own and the previous one stays for a rollback.
pub fn reconfigure_secret_name(pgpool: &str, request: &str) -> String {
    let name = format!("{pgpool}-{request}-config");
    name.chars().take(253).collect()
}

/// What a Reconfigure changes.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigPlan {
    /// A Secret to write first (name, `pgpool.conf` text): the merged overrides of
    /// `applyConfig`.
    pub secret: Option<(String, String)>,
    /// JSON merge patch of the Pgpool that makes the change.
    pub patch: Value,
    /// JSON merge patch of the Pgpool that undoes it.
    pub undo: Value,
    /// The user overrides the Pgpool has afterwards, checked.
    pub overrides: Vec<(String, String)>,
}

/// The texts a Reconfigure reads: the Pgpool's current user config Secret and the request's
/// `configSecret`, each `None` when missing, with their `pgpool.conf` key when present.
#[derive(Clone, Debug, Default)]
pub struct ConfigSources<'a> {
    /// `pgpool.conf` of the Pgpool's current user config Secret (`Some(None)`: the Secret
    /// exists without the key; `None`: no such Secret or none configured).
    pub current_secret: Option<Option<&'a str>>,
    /// `pgpool.conf` of the request's `spec.configuration.configSecret`, same encoding.
    pub new_secret: Option<Option<&'a str>>,
}

/// A Reconfigure that cannot go ahead: CamelCase reason and a message naming the fix.
pub type Refusal = (&'static str, String);

fn parse(text: &str, what: &str, fix: &str) -> Result<Vec<(String, String)>, Refusal> {
    let pairs = pgpool_config::parse_pgpool_conf(text)
        .map_err(|e| ("InvalidConfiguration", format!("{what}: {e}; {fix}")))?;
    pgpool_config::check_overrides(&pairs).map_err(|e| {
        (
            "InvalidConfiguration",
            format!("{}; {fix}", pgpool_config::render_problem(&e)),
        )
    })?;
    Ok(pairs)
}

/// Decide (and check) the change of a Reconfigure request on `pp`.
pub fn plan_reconfigure(
    req: &PgpoolOpsRequest,
    pp: &Pgpool,
    src: &ConfigSources<'_>,
) -> Result<ConfigPlan, Refusal> {
    let empty = ReconfigurationSpec::default();
    let spec = req.spec.configuration.as_ref().unwrap_or(&empty);
    let pp_name = pp.metadata.name.clone().unwrap_or_default();
    let inline = pp
        .spec
        .configuration
        .as_ref()
        .map(|c| c.inline.clone())
        .unwrap_or_default();
    let undo = json!({ "spec": {
        "configSecret": pp.spec.config_secret,
        "configuration": pp.spec.configuration.as_ref().map(|c| json!({
            "secretName": c.secret_name,
            "inline": if c.inline.is_empty() { Value::Null } else { json!(c.inline) },
        })),
    }});
    for file in spec.apply_config.keys() {
        if file != APPLY_CONFIG_FILE {
            return Err((
                "InvalidConfiguration",
                format!(
                    "spec.configuration.applyConfig: {file:?} is not supported, only \
                     pgpool.conf; remove it"
                ),
            ));
        }
    }
    if spec.removes_custom_config() && spec.config_secret.is_some() {
        return Err((
            "InvalidConfiguration",
            "spec.configuration: removeCustomConfig and configSecret cannot be used together; \
             remove one of them"
                .into(),
        ));
    }
    let clear_fields = |config_secret: Value| {
        let mut spec = json!({ "configSecret": config_secret });
        if pp.spec.configuration.is_some() {
            spec["configuration"] = json!({ "secretName": null, "inline": null });
        }
        json!({ "spec": spec })
    };
    if spec.removes_custom_config() && spec.apply_config.is_empty() {
        return Ok(ConfigPlan {
            secret: None,
            patch: clear_fields(Value::Null),
            undo,
            overrides: Vec::new(),
        });
    }
    // the base: the request's Secret, or (without one and unless removing) the current one
    let ns = req.metadata.namespace.clone().unwrap_or_default();
    let base = match (&spec.config_secret, spec.removes_custom_config()) {
        (Some(r), _) => match src.new_secret {
            None => {
                return Err((
                    "ConfigSecretNotFound",
                    format!(
                        "configuration Secret {ns}/{} (spec.configuration.configSecret) not \
                         found; create it with a pgpool.conf key",
                        r.name
                    ),
                ));
            }
            Some(None) => {
                return Err((
                    "ConfigSecretNotFound",
                    format!(
                        "configuration Secret {ns}/{} has no pgpool.conf key; put the \
                         overrides under the key pgpool.conf",
                        r.name
                    ),
                ));
            }
            Some(Some(text)) => {
                let what = format!("pgpool.conf in Secret {ns}/{}", r.name);
                parse(text, &what, "fix the Secret")?;
                text.to_string()
            }
        },
        (None, true) => String::new(),
        (None, false) => src.current_secret.flatten().unwrap_or("").to_string(),
    };
    if spec.apply_config.is_empty() {
        // configSecret alone: the Pgpool points to it; inline overrides stay after it
        let name = spec.config_secret.as_ref().map(|r| r.name.clone());
        let mut overrides = parse(&base, "configSecret", "fix the Secret")?;
        if let Some(text) = inline.get(APPLY_CONFIG_FILE) {
            overrides.extend(parse(text, "spec.configuration.inline", "fix the Pgpool")?);
        }
        let mut patch = json!({ "spec": { "configSecret": { "name": name } } });
        if pp.spec.configuration.is_some() {
            patch["spec"]["configuration"] = json!({ "secretName": null });
        }
        return Ok(ConfigPlan {
            secret: None,
            patch,
            undo,
            overrides,
        });
    }
    // applyConfig: base, then the Pgpool's inline overrides (unless removing), then the
    // request's, in one new Secret (later lines win)
    let mut text = base;
    if !spec.removes_custom_config()
        && let Some(t) = inline.get(APPLY_CONFIG_FILE)
    {
        text = join(&text, t);
    }
    let applied = &spec.apply_config[APPLY_CONFIG_FILE];
    parse(
        applied,
        "spec.configuration.applyConfig pgpool.conf",
        "fix spec.configuration.applyConfig and create the request again",
    )?;
    text = join(&text, applied);
    let overrides = parse(
        &text,
        "the merged pgpool.conf",
        "fix the Pgpool's configuration",
    )?;
    let name = reconfigure_secret_name(&pp_name, req.metadata.name.as_deref().unwrap_or(""));
    Ok(ConfigPlan {
        patch: clear_fields(json!({ "name": name })),
        secret: Some((name, text)),
        undo,
        overrides,
    })
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else if a.ends_with('\n') {
        format!("{a}{b}")
    } else {
        format!("{a}\n{b}")
    }
}

/// True when the config Secret was rendered from generation `generation` or later.
pub fn rendered_since(config_secret: &Secret, generation: i64) -> bool {
    config_secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_RENDERED_GENERATION))
        .and_then(|g| g.parse::<i64>().ok())
        .is_some_and(|g| g >= generation)
}

/// The config hash the provisioner wrote on the config Secret while paused.
pub fn rendered_hash(config_secret: &Secret) -> Option<String> {
    config_secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH))
        .cloned()
        .filter(|h| !h.is_empty())
}

/// True when the rendered `pcp.conf` holds exactly `user` with `password`.
pub fn pcp_rendered(config_secret: &Secret, user: &str, password: &str) -> bool {
    let want = format!("{user}:{}", pgpool_config::pcp_md5(password));
    secret_string(config_secret, pgpool_config::KEY_PCP_CONF)
        .is_some_and(|text| text.lines().any(|l| l.trim() == want))
}

/// The data of an auth Secret after a rotation to `password` (the previous credentials kept
/// under KubeDB's `.prev` keys).
pub fn rotated_auth_data(current: &Secret, password: &str) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> = current
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|v| (k.clone(), v)))
        .collect();
    let user = data
        .get("username")
        .cloned()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| names::PCP_USER.to_string());
    if let Some(old) = data.get("password").cloned() {
        data.insert(KEY_PREVIOUS_PASSWORD.into(), old);
        data.insert(KEY_PREVIOUS_USERNAME.into(), user.clone());
    }
    data.insert("username".into(), user);
    data.insert("password".into(), password.to_string());
    data
}

/// The username and password of a basic-auth Secret, when both are there and not empty.
pub fn credentials(secret: &Secret) -> Option<(String, String)> {
    let user = secret_string(secret, "username").filter(|u| !u.is_empty());
    let password = secret_string(secret, "password").filter(|p| !p.is_empty())?;
    Some((
        user.unwrap_or_else(|| names::PCP_USER.to_string()),
        password,
    ))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// Check a RotateAuth request on `pp`; `new_secret` is the Secret of
/// `spec.authentication.secretRef`, if it names one that exists.
pub fn check_rotate_auth(
    req: &PgpoolOpsRequest,
    pp: &Pgpool,
    new_secret: Option<&Secret>,
) -> Result<(), Refusal> {
    let ns = req.metadata.namespace.clone().unwrap_or_default();
    let secret_ref = req
        .spec
        .authentication
        .as_ref()
        .and_then(|a| a.secret_ref.as_ref());
    match secret_ref {
        Some(r) => match new_secret {
            None => Err((
                "AuthSecretNotFound",
                format!(
                    "auth Secret {ns}/{} (spec.authentication.secretRef) not found; create it \
                     (type kubernetes.io/basic-auth) with keys username and password",
                    r.name
                ),
            )),
            Some(s) if credentials(s).is_none() => Err((
                "AuthSecretInvalid",
                format!(
                    "auth Secret {ns}/{} (spec.authentication.secretRef) needs a non-empty \
                     password key; add keys username and password",
                    r.name
                ),
            )),
            Some(_) => Ok(()),
        },
        None if pp.spec.auth_externally_managed() => Err((
            "AuthSecretExternallyManaged",
            format!(
                "auth Secret {ns}/{} is externally managed (spec.authSecret.externallyManaged: \
                 true), so the operator does not write it: put the new password into a Secret \
                 and set spec.authentication.secretRef to it",
                pp.auth_secret_name()
            ),
        )),
        None => Ok(()),
    }
}
