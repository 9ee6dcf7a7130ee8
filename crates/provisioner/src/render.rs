//! `pgpool-provisioner render`: what the provisioner would create for a Pgpool, from YAML
//! files instead of a cluster. The objects are found by [`Inputs`] (a
//! [`Lookup`](crate::pgpool::dereference::Lookup) over the files), then go through the
//! controller's own [`references`], [`validate`] and [`build`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use pgpool_api::{AppBinding, PetSet, Pgpool, PgpoolVersion, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pgpool::build::{Desired, build};
use crate::pgpool::dereference::{Children, Lookup, references};
use crate::pgpool::diff::stamp_hash;
use crate::pgpool::validate::{AuthPlan, Generator, Plan, Problem, validate};
use pgpool_config::{KEY_PCP_CONF, KEY_PGPOOL_CONF, KEY_POOL_HBA_CONF, KEY_POOL_PASSWD};

/// What a masked secret value is printed as.
pub const MASK: &str = "********";
/// The uid given to a Pgpool manifest that has none (the API server would assign one).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";
/// The namespace of a Pgpool manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The configuration files, each under a `# <file>` line.
    #[default]
    Files,
    /// The child objects as multi-document YAML.
    Yaml,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input cannot be read or understood (exit 1).
    #[error("{0}")]
    Input(String),
    /// The Pgpool cannot be provisioned: the problem its condition would carry (exit 2).
    #[error("{}: {}", .0.reason, .0.message)]
    Problem(Problem),
}

/// The objects read from the files: one Pgpool and what it may point at.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The Pgpool (namespace and uid filled in when the manifest has none).
    pub pgpool: Pgpool,
    /// Catalog entries.
    pub versions: Vec<PgpoolVersion>,
    /// AppBindings.
    pub appbindings: Vec<AppBinding>,
    /// Secrets (the AppBinding's, a configuration Secret, existing children).
    pub secrets: Vec<Secret>,
    /// Services (a `<service>-standby` Service, existing children).
    pub services: Vec<Service>,
    /// Existing PetSets.
    pub petsets: Vec<PetSet>,
    /// Existing PodDisruptionBudgets.
    pub pdbs: Vec<PodDisruptionBudget>,
}

fn typed<K: DeserializeOwned>(value: serde_json::Value, source: &str) -> Result<K, String> {
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    serde_json::from_value(value).map_err(|e| format!("{source}: invalid {kind}: {e}"))
}

fn find<'a, K: kube::Resource>(objs: &'a [K], ns: &str, name: &str) -> Option<&'a K> {
    objs.iter().find(|o| {
        o.meta().name.as_deref() == Some(name) && o.meta().namespace.as_deref() == Some(ns)
    })
}

impl Inputs {
    /// Reads multi-document YAML `documents`, each `(source, text)` (`source` names the file
    /// in errors). Objects of other kinds are ignored; a `List` is read item by item. Exactly
    /// one Pgpool must be among them; namespaced objects without a namespace get the Pgpool's.
    pub fn parse(documents: &[(String, String)]) -> Result<Self, RenderError> {
        let mut values = Vec::new();
        for (source, text) in documents {
            for doc in serde_yaml::Deserializer::from_str(text) {
                let value = <serde_json::Value as serde::Deserialize>::deserialize(doc)
                    .map_err(|e| RenderError::Input(format!("{source}: not YAML: {e}")))?;
                let mut queue = vec![value];
                while let Some(v) = queue.pop() {
                    match v["kind"].as_str() {
                        Some("List") => {
                            if let Some(items) = v["items"].as_array() {
                                queue.extend(items.iter().rev().cloned());
                            }
                        }
                        Some(_) => values.push((source.clone(), v)),
                        None if v.is_null() => {}
                        None => {
                            return Err(RenderError::Input(format!(
                                "{source}: a document without kind"
                            )));
                        }
                    }
                }
            }
        }
        let mut pgpools: Vec<Pgpool> = Vec::new();
        let (mut versions, mut appbindings, mut secrets) = (Vec::new(), Vec::new(), Vec::new());
        let (mut services, mut petsets, mut pdbs) = (Vec::new(), Vec::new(), Vec::new());
        for (source, v) in values {
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let err = RenderError::Input;
            match kind.as_str() {
                "Pgpool" => pgpools.push(typed(v, &source).map_err(err)?),
                "PgpoolVersion" => versions.push(typed(v, &source).map_err(err)?),
                "AppBinding" => appbindings.push(typed(v, &source).map_err(err)?),
                "Secret" => secrets.push(typed(v, &source).map_err(err)?),
                "Service" => services.push(typed(v, &source).map_err(err)?),
                "PetSet" => petsets.push(typed(v, &source).map_err(err)?),
                "PodDisruptionBudget" => pdbs.push(typed(v, &source).map_err(err)?),
                _ => {}
            }
        }
        if pgpools.len() != 1 {
            return Err(RenderError::Input(format!(
                "the input holds {} Pgpool objects; give exactly one",
                pgpools.len()
            )));
        }
        let mut inputs = Inputs {
            pgpool: pgpools.remove(0),
            versions,
            appbindings,
            secrets,
            services,
            petsets,
            pdbs,
        };
        let meta = &mut inputs.pgpool.metadata;
        let ns = meta
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string())
            .clone();
        meta.uid.get_or_insert_with(|| PLACEHOLDER_UID.to_string());
        fn default_ns<K: kube::Resource>(objs: &mut [K], ns: &str) {
            for o in objs {
                o.meta_mut().namespace.get_or_insert_with(|| ns.to_string());
            }
        }
        // as the API server stores it: stringData written over data
        for secret in &mut inputs.secrets {
            if let Some(text) = secret.string_data.take() {
                let data = secret.data.get_or_insert_with(BTreeMap::new);
                for (k, v) in text {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
            }
        }
        default_ns(&mut inputs.appbindings, &ns);
        default_ns(&mut inputs.secrets, &ns);
        default_ns(&mut inputs.services, &ns);
        default_ns(&mut inputs.petsets, &ns);
        default_ns(&mut inputs.pdbs, &ns);
        Ok(inputs)
    }

    /// The Pgpool's children found in the input, by their names.
    fn children(&self) -> Children {
        let p = &self.pgpool;
        let (name, ns) = (p.name_any(), p.namespace().unwrap_or_default());
        Children {
            auth_secret: find(&self.secrets, &ns, &p.auth_secret_name()).cloned(),
            config_secret: find(&self.secrets, &ns, &names::config_secret(&name)).cloned(),
            primary_service: find(&self.services, &ns, &names::primary_service(&name)).cloned(),
            pods_service: find(&self.services, &ns, &names::pods_service(&name)).cloned(),
            stats_service: find(&self.services, &ns, &names::stats_service(&name)).cloned(),
            petset: find(&self.petsets, &ns, &names::petset(&name)).cloned(),
            pdb: find(&self.pdbs, &ns, &names::pdb(&name)).cloned(),
            service_monitor: None,
        }
    }
}

impl Lookup for Inputs {
    fn version(&self, name: &str) -> Option<PgpoolVersion> {
        self.versions
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
            .cloned()
    }

    async fn appbinding(&self, ns: &str, name: &str) -> kube::Result<Option<AppBinding>> {
        Ok(find(&self.appbindings, ns, name).cloned())
    }

    async fn secret(&self, ns: &str, name: &str) -> kube::Result<Option<Secret>> {
        Ok(find(&self.secrets, ns, name).cloned())
    }

    async fn service_exists(&self, ns: &str, name: &str) -> kube::Result<bool> {
        Ok(find(&self.services, ns, name).is_some())
    }
}

/// The plan and children the provisioner would make for `inputs`, or the problem its
/// condition would carry. `generator` makes the credentials the provisioner would generate.
pub async fn plan(
    inputs: &Inputs,
    generator: &mut dyn Generator,
) -> Result<(Plan, Desired), RenderError> {
    let mut observed = references(inputs, &inputs.pgpool)
        .await
        .map_err(|e| RenderError::Input(e.to_string()))?;
    observed.children = inputs.children();
    let plan = validate(&inputs.pgpool, &observed, generator).map_err(RenderError::Problem)?;
    let desired = build(&inputs.pgpool, &plan);
    Ok((plan, desired))
}

/// Masks the values of `*password*` parameters in a `pgpool.conf` text (empty ones stay).
pub fn mask_pgpool_conf(text: &str) -> String {
    map_lines(text, |line| {
        let (key, value) = line.split_once('=')?;
        let key = key.trim();
        if key.starts_with('#') || !key.contains("password") {
            return None;
        }
        let value = value.trim().trim_matches('\'');
        (!value.is_empty()).then(|| format!("{key} = '{MASK}'"))
    })
}

/// Masks what follows `user:` on each line of a `pcp.conf` or `pool_passwd` text.
pub fn mask_user_lines(text: &str) -> String {
    map_lines(text, |line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let (user, _) = line.split_once(':')?;
        Some(format!("{user}:{MASK}"))
    })
}

fn map_lines(text: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        out.push_str(&f(body).unwrap_or_else(|| body.to_string()));
        out.push_str(end);
    }
    out
}

/// A config or auth Secret key's text, masked unless `show`: the files keep all but their
/// secrets; usernames stay; any other key is masked whole.
fn secret_text(key: &str, text: &str, show: bool) -> String {
    if show {
        return text.to_string();
    }
    match key {
        KEY_PGPOOL_CONF => mask_pgpool_conf(text),
        KEY_PCP_CONF | KEY_POOL_PASSWD => mask_user_lines(text),
        KEY_POOL_HBA_CONF => text.to_string(),
        k if k.contains("username") => text.to_string(),
        _ => MASK.to_string(),
    }
}

/// The header lines: what was rendered, and what was generated or masked.
fn header(inputs: &Inputs, plan: &Plan, show_secrets: bool) -> String {
    let p = &inputs.pgpool;
    let mut out = format!(
        "## pgpool-provisioner render: Pgpool {}/{}, PgpoolVersion {} (image {})\n",
        plan.namespace, plan.name, p.spec.version, plan.pgpool_image
    );
    if let AuthPlan::Managed { exists: false, .. } = &plan.auth {
        let _ = writeln!(
            out,
            "## auth Secret {}: generated (not in the input): the provisioner creates it with a random pcp password",
            plan.auth.name()
        );
    }
    if inputs.children().config_secret.is_none() {
        let _ = writeln!(
            out,
            "## pool key: generated (no {} in the input)",
            names::config_secret(&plan.name)
        );
    }
    if p.metadata.uid.as_deref() == Some(PLACEHOLDER_UID) {
        let _ = writeln!(out, "## uid: a placeholder (the manifest has none)");
    }
    if !show_secrets {
        let _ = writeln!(
            out,
            "## passwords and keys are masked as {MASK}; --show-secrets prints them"
        );
    }
    out
}

/// The configuration files, each under a `# <file>` line.
fn files(plan: &Plan, show_secrets: bool) -> String {
    let r = &plan.rendered;
    let mut out = String::new();
    for (key, text) in [
        (KEY_PGPOOL_CONF, &r.pgpool_conf),
        (KEY_POOL_HBA_CONF, &r.pool_hba_conf),
        (KEY_PCP_CONF, &r.pcp_conf),
        (KEY_POOL_PASSWD, &r.pool_passwd),
    ] {
        let _ = writeln!(out, "# {key}");
        out.push_str(&secret_text(key, text, show_secrets));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// A Secret with its `data` as (masked) `stringData`.
fn readable_secret(secret: &Secret, show_secrets: bool) -> Secret {
    let mut s = secret.clone();
    let data = s.data.take().unwrap_or_default();
    let text: BTreeMap<String, String> = data
        .into_iter()
        .map(|(k, v)| {
            let t = String::from_utf8_lossy(&v.0).into_owned();
            let t = secret_text(&k, &t, show_secrets);
            (k, t)
        })
        .collect();
    s.string_data = Some(text);
    s
}

fn yaml_doc<K: Serialize>(obj: &K) -> Result<String, RenderError> {
    let mut value = serde_json::to_value(obj).map_err(|e| RenderError::Input(e.to_string()))?;
    stamp_hash(&mut value);
    let text = serde_yaml::to_string(&value).map_err(|e| RenderError::Input(e.to_string()))?;
    Ok(format!("---\n{text}"))
}

/// The child objects as multi-document YAML (Secrets with `stringData`).
fn objects(desired: &Desired, show_secrets: bool) -> Result<String, RenderError> {
    let mut out = String::new();
    // the hash is stamped over what the provisioner applies, before masking
    let mut secret = |s: &Secret| -> Result<(), RenderError> {
        let mut value = serde_json::to_value(s).map_err(|e| RenderError::Input(e.to_string()))?;
        stamp_hash(&mut value);
        let stamped: Secret =
            serde_json::from_value(value).map_err(|e| RenderError::Input(e.to_string()))?;
        let text = serde_yaml::to_string(&readable_secret(&stamped, show_secrets))
            .map_err(|e| RenderError::Input(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(&text);
        Ok(())
    };
    if let Some(auth) = &desired.auth_secret {
        secret(auth)?;
    }
    secret(&desired.config_secret)?;
    for svc in [Some(&desired.primary_service), Some(&desired.pods_service)]
        .into_iter()
        .chain([desired.stats_service.as_ref()])
        .flatten()
    {
        out.push_str(&yaml_doc(svc)?);
    }
    out.push_str(&yaml_doc(&desired.petset)?);
    if let Some(pdb) = &desired.pdb {
        out.push_str(&yaml_doc(pdb)?);
    }
    Ok(out)
}

/// Renders `inputs` as `output`: a header of `##` lines, then the files or objects.
pub async fn render(
    inputs: &Inputs,
    output: Output,
    show_secrets: bool,
    generator: &mut dyn Generator,
) -> Result<String, RenderError> {
    let (plan, desired) = plan(inputs, generator).await?;
    let mut out = header(inputs, &plan, show_secrets);
    match output {
        Output::Files => out.push_str(&files(&plan, show_secrets)),
        Output::Yaml => out.push_str(&objects(&desired, show_secrets)?),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_the_structure() {
        let conf = "port = 9999\nsr_check_password = ''\nhealth_check_password = 'x'\npool_passwd = 'pool_passwd'\n# a_password = 'y'\n";
        assert_eq!(
            mask_pgpool_conf(conf),
            "port = 9999\nsr_check_password = ''\nhealth_check_password = '********'\npool_passwd = 'pool_passwd'\n# a_password = 'y'\n"
        );
        assert_eq!(
            mask_user_lines("pcp:abc\npostgres:AESxyz\n"),
            "pcp:********\npostgres:********\n"
        );
        assert_eq!(secret_text("password", "s3cret", false), MASK);
        assert_eq!(secret_text("username", "pcp", false), "pcp");
        assert_eq!(secret_text("password", "s3cret", true), "s3cret");
    }

    #[test]
    fn one_pgpool_is_needed() {
        let docs = vec![(
            "a.yaml".to_string(),
            "kind: Service\nmetadata: {name: x}\n".to_string(),
        )];
        let err = Inputs::parse(&docs).unwrap_err();
        assert!(matches!(err, RenderError::Input(m) if m.contains("0 Pgpool")));
    }
}
