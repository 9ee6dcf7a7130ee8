//! Chart checks: every manifest both charts render (default values and each
//! `charts/<chart>/ci/*-values.yaml`) parses strictly into its Kubernetes type, and the
//! rendered objects follow the rules of DESIGN.md §7: least-privilege RBAC without
//! wildcards, a restricted security context, probes, leader election, values that do what
//! they say.
//!
//! The renderings come from `$CHARTS_RENDERED_DIR` (written by `make charts-check`), else
//! from helm found on PATH or in `.cache/tools/bin` (`scripts/helm.sh install`); without
//! either, the tests that need them print one line and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use e2e::charts::{self, Manifest, RELEASE_NAMESPACE, Rendering};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use pgpool_api::PgpoolVersion;
use serde::Deserialize as _;
use serde_json::Value;

/// Values documented as a whole in the READMEs (their sub-keys are Kubernetes fields).
const OPAQUE_VALUES: &[&str] = &[
    "resources",
    "podSecurityContext",
    "securityContext",
    "affinity",
    "nodeSelector",
];

/// One rendering, parsed.
struct Parsed {
    chart: String,
    case: String,
    values: Value,
    app_version: String,
    objects: Objects,
}

impl Parsed {
    fn what(&self) -> String {
        format!("{} ({} values)", self.chart, self.case)
    }
    fn value(&self, pointer: &str) -> &Value {
        self.values.pointer(pointer).unwrap_or(&Value::Null)
    }
    fn flag(&self, pointer: &str) -> bool {
        self.value(pointer).as_bool().unwrap_or(false)
    }
    fn text(&self, pointer: &str) -> String {
        match self.value(pointer) {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    fn is_provisioner(&self) -> bool {
        self.chart == "pgpool-provisioner"
    }
}

/// The objects of one rendering, by type.
#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    service_accounts: Vec<ServiceAccount>,
    services: Vec<Service>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    policies: Vec<ValidatingAdmissionPolicy>,
    policy_bindings: Vec<ValidatingAdmissionPolicyBinding>,
    config_maps: Vec<ConfigMap>,
    service_monitors: Vec<DynamicObject>,
}

/// Kinds that are cluster-scoped (no metadata.namespace); every other one must carry the
/// release namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

fn parse_manifest(m: &Manifest, objects: &mut Objects) -> Result<(), String> {
    let strict = |e: charts::ChartError| format!("{} ({}): {e}", m.source, m.name());
    match (m.api_version(), m.kind()) {
        ("apps/v1", "Deployment") => objects
            .deployments
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("v1", "ServiceAccount") => objects
            .service_accounts
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("v1", "Service") => objects
            .services
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => objects
            .cluster_roles
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => objects
            .cluster_role_bindings
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("rbac.authorization.k8s.io/v1", "Role") => objects
            .roles
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => objects
            .role_bindings
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => objects
            .policies
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => objects
            .policy_bindings
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("v1", "ConfigMap") => objects
            .config_maps
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => objects
            .service_monitors
            .push(charts::strict_parse(&m.value).map_err(strict)?),
        (api_version, kind) => {
            return Err(format!(
                "{}: unexpected {api_version}/{kind} {}: add it to the chart checks",
                m.source,
                m.name()
            ));
        }
    }
    if m.name().is_empty() {
        return Err(format!("{}: {} without metadata.name", m.source, m.kind()));
    }
    let cluster_scoped = CLUSTER_SCOPED.contains(&m.kind());
    match (cluster_scoped, m.namespace()) {
        (true, Some(ns)) => Err(format!(
            "{}: cluster-scoped {} {} has namespace {ns}",
            m.source,
            m.kind(),
            m.name()
        )),
        (false, ns) if ns != Some(RELEASE_NAMESPACE) => Err(format!(
            "{}: {} {} must be in the release namespace {RELEASE_NAMESPACE}, has {ns:?}",
            m.source,
            m.kind(),
            m.name()
        )),
        _ => Ok(()),
    }
}

fn read_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// `over` merged into `base` the way helm merges values files: maps key by key, anything
/// else replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn parse_rendering(r: &Rendering) -> Result<Parsed, Vec<String>> {
    let chart_dir = charts::chart_dir(&r.chart);
    let mut values = read_yaml(&chart_dir.join("values.yaml"));
    if r.case != "default" {
        merge(
            &mut values,
            &read_yaml(&chart_dir.join("ci").join(format!("{}-values.yaml", r.case))),
        );
    }
    let app_version = read_yaml(&chart_dir.join("Chart.yaml"))
        .get("appVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let manifests = charts::split_documents(&r.text).map_err(|e| vec![e.to_string()])?;
    let mut objects = Objects::default();
    let errors: Vec<String> = manifests
        .iter()
        .filter_map(|m| parse_manifest(m, &mut objects).err())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Parsed {
        chart: r.chart.clone(),
        case: r.case.clone(),
        values,
        app_version,
        objects,
    })
}

/// Every rendering, parsed, or `None` (after one line) when there is nothing to render with.
fn rendered(test: &str) -> Option<&'static [Parsed]> {
    static RENDERED: OnceLock<Option<Result<Vec<Parsed>, String>>> = OnceLock::new();
    let result = RENDERED.get_or_init(|| {
        let source = charts::source()?;
        let renderings = match charts::load_all(&source) {
            Ok(r) => r,
            Err(e) => return Some(Err(e.to_string())),
        };
        let mut parsed = Vec::new();
        let mut errors = Vec::new();
        for r in &renderings {
            match parse_rendering(r) {
                Ok(p) => parsed.push(p),
                Err(e) => errors.extend(
                    e.into_iter()
                        .map(|e| format!("{} ({}): {e}", r.chart, r.case)),
                ),
            }
        }
        if errors.is_empty() {
            Some(Ok(parsed))
        } else {
            Some(Err(errors.join("\n")))
        }
    });
    match result {
        None => {
            println!(
                "{test}: skipped: helm not found; run `make charts-check` (installs helm into .cache/tools) or put helm on PATH"
            );
            None
        }
        Some(Err(e)) => panic!("rendering or parsing the charts failed:\n{e}"),
        Some(Ok(parsed)) => Some(parsed.as_slice()),
    }
}

#[test]
fn every_rendered_manifest_parses_strictly_into_its_type() {
    let Some(all) = rendered("every_rendered_manifest_parses_strictly_into_its_type") else {
        return;
    };
    for chart in charts::CHARTS {
        let cases = charts::cases(chart).expect("cases");
        assert!(
            cases.len() >= 2,
            "{chart}: needs ci/*-values.yaml besides the defaults"
        );
        for case in cases {
            assert!(
                all.iter().any(|p| p.chart == chart && p.case == case.name),
                "{chart}: case {} was not rendered",
                case.name
            );
        }
    }
    for p in all {
        let o = &p.objects;
        assert_eq!(o.deployments.len(), 1, "{}: one Deployment", p.what());
        assert_eq!(o.cluster_roles.len(), 1, "{}: one ClusterRole", p.what());
        assert_eq!(
            o.cluster_role_bindings.len(),
            1,
            "{}: one ClusterRoleBinding",
            p.what()
        );
        assert_eq!(o.services.len(), 1, "{}: one Service", p.what());
        assert_eq!(
            o.service_accounts.len(),
            1,
            "{}: one ServiceAccount",
            p.what()
        );
        let leader = p.flag("/leaderElection/enabled");
        assert_eq!(
            o.roles.len(),
            usize::from(leader),
            "{}: Lease Role",
            p.what()
        );
        assert_eq!(
            o.role_bindings.len(),
            usize::from(leader),
            "{}: Lease RoleBinding",
            p.what()
        );
    }
}

/// (apiGroup, resource, verb) triples a ClusterRole grants.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn expand(table: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resource, verbs) in table {
        for verb in *verbs {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

const READ: &[&str] = &["get", "list", "watch"];
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
const STATUS: &[&str] = &["get", "update", "patch"];
const EVENTS: &[&str] = &["create", "patch"];

/// What the provisioner may do, whatever the values.
const PROVISIONER: &[(&str, &str, &[&str])] = &[
    (
        "kubedb.com",
        "pgpools",
        &["get", "list", "watch", "update", "patch"],
    ),
    ("kubedb.com", "pgpools/status", STATUS),
    ("kubedb.com", "pgpools/finalizers", &["update"]),
    ("catalog.kubedb.com", "pgpoolversions", READ),
    ("appcatalog.appscode.com", "appbindings", READ),
    ("", "secrets", MANAGE),
    ("", "services", MANAGE),
    ("apps.k8s.appscode.com", "petsets", MANAGE),
    ("", "pods", READ),
    ("policy", "poddisruptionbudgets", MANAGE),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["get", "list"],
    ),
    ("events.k8s.io", "events", EVENTS),
    ("", "events", EVENTS),
];

/// What only the built-in PetSet controller needs (`petsetController.enabled`).
const PETSET_CONTROLLER: &[(&str, &str, &[&str])] = &[
    ("apps.k8s.appscode.com", "petsets/status", STATUS),
    ("apps.k8s.appscode.com", "petsets/finalizers", &["update"]),
    ("", "pods", &["create", "delete"]),
    (
        "",
        "persistentvolumeclaims",
        &["get", "list", "watch", "create"],
    ),
    ("apps", "controllerrevisions", MANAGE),
];

/// Applying the default catalog (`catalog.enabled`).
const CATALOG: &[(&str, &str, &[&str])] =
    &[("catalog.kubedb.com", "pgpoolversions", &["create", "patch"])];

/// ServiceMonitors for Pgpools (`rbac.serviceMonitors`).
const SERVICE_MONITORS: &[(&str, &str, &[&str])] =
    &[("monitoring.coreos.com", "servicemonitors", MANAGE)];

/// What the ops-manager may do.
const OPS_MANAGER: &[(&str, &str, &[&str])] = &[
    (
        "ops.kubedb.com",
        "pgpoolopsrequests",
        &["get", "list", "watch", "update", "patch"],
    ),
    ("ops.kubedb.com", "pgpoolopsrequests/status", STATUS),
    ("kubedb.com", "pgpools", &["get", "list", "watch", "patch"]),
    ("kubedb.com", "pgpools/status", STATUS),
    ("catalog.kubedb.com", "pgpoolversions", READ),
    (
        "apps.k8s.appscode.com",
        "petsets",
        &["get", "list", "watch", "update", "patch"],
    ),
    ("", "pods", &["get", "list", "watch", "delete"]),
    ("", "pods/eviction", &["create"]),
    // Why an eviction is refused: the budget's DisruptionAllowed condition.
    ("policy", "poddisruptionbudgets", READ),
    ("events.k8s.io", "events", EVENTS),
    ("", "events", EVENTS),
];

fn no_wildcards(what: &str, rules: &[PolicyRule]) {
    for rule in rules {
        let fields = [
            ("apiGroups", rule.api_groups.clone().unwrap_or_default()),
            ("resources", rule.resources.clone().unwrap_or_default()),
            ("verbs", rule.verbs.clone()),
            (
                "resourceNames",
                rule.resource_names.clone().unwrap_or_default(),
            ),
        ];
        for (field, items) in fields {
            assert!(
                items.iter().all(|i| !i.contains('*')),
                "{what}: wildcard in {field}: {rule:?}"
            );
        }
        assert!(
            rule.non_resource_urls.is_none(),
            "{what}: nonResourceURLs: {rule:?}"
        );
        assert!(
            !rule.verbs.is_empty(),
            "{what}: rule without verbs: {rule:?}"
        );
    }
}

fn arg_value<'a>(container: &'a Container, flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

fn only_container(p: &Parsed) -> &Container {
    let spec = p.objects.deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .unwrap_or_else(|| panic!("{}: Deployment without pod spec", p.what()));
    assert_eq!(spec.containers.len(), 1, "{}: one container", p.what());
    &spec.containers[0]
}

#[test]
fn rbac_grants_exactly_what_each_controller_uses_and_no_wildcards() {
    let Some(all) = rendered("rbac_grants_exactly_what_each_controller_uses_and_no_wildcards")
    else {
        return;
    };
    for p in all {
        let role = &p.objects.cluster_roles[0];
        let rules = role.rules.clone().unwrap_or_default();
        no_wildcards(&p.what(), &rules);
        let mut expected = BTreeSet::new();
        if p.is_provisioner() {
            expected.extend(expand(PROVISIONER));
            if p.flag("/petsetController/enabled") {
                expected.extend(expand(PETSET_CONTROLLER));
            }
            if p.flag("/rbac/serviceMonitors") {
                expected.extend(expand(SERVICE_MONITORS));
            }
            if p.flag("/catalog/enabled") {
                expected.extend(expand(CATALOG));
            }
        } else {
            expected.extend(expand(OPS_MANAGER));
        }
        let got = grants(&rules);
        let extra: Vec<_> = got.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{}: ClusterRole grants too much {extra:?} or too little {missing:?}",
            p.what()
        );
        assert!(
            rules.iter().all(|r| r.resource_names.is_none()),
            "{}: ClusterRole rules are per kind, not per name",
            p.what()
        );

        // The Lease Role: create, and get/update/patch of this release's Lease only.
        let lease = arg_value(only_container(p), "--lease-name")
            .unwrap_or_else(|| panic!("{}: no --lease-name", p.what()))
            .to_string();
        if let Some(custom) = p
            .value("/leaderElection/leaseName")
            .as_str()
            .filter(|s| !s.is_empty())
        {
            assert_eq!(lease, custom, "{}: leaderElection.leaseName", p.what());
        }
        for role in &p.objects.roles {
            let rules = role.rules.clone().unwrap_or_default();
            no_wildcards(&p.what(), &rules);
            let mut got = BTreeSet::new();
            for rule in &rules {
                for (group, resource, verb) in grants(std::slice::from_ref(rule)) {
                    got.insert((group, resource, verb, rule.resource_names.clone()));
                }
            }
            let named = Some(vec![lease.clone()]);
            let expected: BTreeSet<_> = [
                ("coordination.k8s.io", "leases", "create", None),
                ("coordination.k8s.io", "leases", "get", named.clone()),
                ("coordination.k8s.io", "leases", "update", named.clone()),
                ("coordination.k8s.io", "leases", "patch", named.clone()),
            ]
            .into_iter()
            .map(|(g, r, v, n)| (g.to_string(), r.to_string(), v.to_string(), n))
            .collect();
            assert_eq!(got, expected, "{}: Lease Role", p.what());
        }
    }
}

#[test]
fn every_cluster_role_rule_is_commented_with_its_purpose() {
    for chart in charts::CHARTS {
        let path = charts::chart_dir(chart).join("templates/rbac.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                let above = lines[..i]
                    .iter()
                    .rev()
                    .find(|l| !l.trim_start().starts_with("{{"))
                    .map(|l| l.trim_start())
                    .unwrap_or("");
                assert!(
                    above.starts_with('#'),
                    "{chart}: rule at line {} of templates/rbac.yaml has no comment saying what it is for",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn deployments_run_restricted_with_probes_and_leader_election() {
    let Some(all) = rendered("deployments_run_restricted_with_probes_and_leader_election") else {
        return;
    };
    for p in all {
        let what = p.what();
        let deployment = &p.objects.deployments[0];
        let spec = deployment.spec.as_ref().expect("spec");
        assert_eq!(
            spec.replicas.map(i64::from),
            p.value("/replicaCount").as_i64(),
            "{what}: replicas from replicaCount"
        );
        let pod = spec.template.spec.as_ref().expect("pod spec");

        // Pod security context: non-root, RuntimeDefault seccomp.
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{what}: seccomp RuntimeDefault"
        );
        assert_eq!(pod.host_network, None, "{what}: no host network");

        let c = only_container(p);
        let sc = c
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{what}: allowPrivilegeEscalation"
        );
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{what}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc.run_as_non_root,
            Some(true),
            "{what}: container runAsNonRoot"
        );
        assert_ne!(sc.privileged, Some(true), "{what}: privileged");
        let caps = sc.capabilities.as_ref().expect("capabilities");
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{what}: drop ALL"
        );
        assert!(
            caps.add.as_ref().is_none_or(Vec::is_empty),
            "{what}: no added capabilities"
        );
        assert!(
            sc.run_as_user.or(psc.run_as_user).is_some_and(|u| u != 0),
            "{what}: a non-root uid"
        );

        // Image.
        let tag = Some(p.text("/image/tag"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| p.app_version.clone());
        assert_eq!(
            c.image.as_deref(),
            Some(format!("{}:{tag}", p.text("/image/repository")).as_str()),
            "{what}: image"
        );
        assert_eq!(
            c.image_pull_policy.as_deref(),
            Some(p.text("/image/pullPolicy").as_str())
        );

        // Metrics port and probes.
        let port = p.value("/metrics/port").as_i64().expect("metrics.port");
        let ports = c.ports.clone().unwrap_or_default();
        assert!(
            ports
                .iter()
                .any(|cp| cp.name.as_deref() == Some("http-metrics")
                    && i64::from(cp.container_port) == port),
            "{what}: container port http-metrics {port}"
        );
        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{what}: {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{what}: probe path");
            assert_eq!(
                get.port,
                IntOrString::String("http-metrics".into()),
                "{what}: probe port"
            );
        }

        // Resources.
        let resources = c.resources.as_ref().expect("resources");
        let requests = resources.requests.clone().unwrap_or_default();
        assert!(
            requests.contains_key("cpu") && requests.contains_key("memory"),
            "{what}: requests"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|l| l.contains_key("memory")),
            "{what}: memory limit"
        );

        // Downward API.
        let env: BTreeMap<String, String> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                let path = e
                    .value_from
                    .as_ref()?
                    .field_ref
                    .as_ref()?
                    .field_path
                    .clone();
                Some((e.name.clone(), path))
            })
            .collect();
        assert_eq!(
            env.get("POD_NAME").map(String::as_str),
            Some("metadata.name"),
            "{what}"
        );
        assert_eq!(
            env.get("POD_NAMESPACE").map(String::as_str),
            Some("metadata.namespace"),
            "{what}"
        );

        // Flags from values.
        let flags = [
            ("--log-level", p.text("/logLevel")),
            ("--log-format", p.text("/logFormat")),
            ("--metrics-bind-address", format!("0.0.0.0:{port}")),
            (
                "--leader-elect",
                p.flag("/leaderElection/enabled").to_string(),
            ),
            ("--lease-namespace", RELEASE_NAMESPACE.to_string()),
            ("--concurrency", p.text("/concurrency")),
        ];
        for (flag, want) in flags {
            assert_eq!(arg_value(c, flag), Some(want.as_str()), "{what}: {flag}");
        }
        let watch = p.text("/watchNamespace");
        assert_eq!(
            arg_value(c, "--namespace"),
            Some(watch.as_str()).filter(|w| !w.is_empty()),
            "{what}: --namespace from watchNamespace"
        );
        if p.is_provisioner() {
            assert_eq!(
                arg_value(c, "--petset-controller"),
                Some(p.flag("/petsetController/enabled").to_string().as_str()),
                "{what}: --petset-controller"
            );
        } else {
            assert_eq!(arg_value(c, "--petset-controller"), None, "{what}");
        }
        let extra: Vec<String> = p
            .value("/extraArgs")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let args = c.args.clone().unwrap_or_default();
        assert!(
            args.ends_with(&extra),
            "{what}: extraArgs come last: {args:?}"
        );
    }
}

#[test]
fn bindings_service_and_service_monitor_match_the_deployment() {
    let Some(all) = rendered("bindings_service_and_service_monitor_match_the_deployment") else {
        return;
    };
    for p in all {
        let what = p.what();
        let o = &p.objects;
        let pod = o.deployments[0].spec.as_ref().expect("spec");
        let sa = o.service_accounts[0]
            .metadata
            .name
            .clone()
            .expect("sa name");
        let pod_spec = pod.template.spec.as_ref().expect("pod spec");
        assert_eq!(
            pod_spec.service_account_name.as_deref(),
            Some(sa.as_str()),
            "{what}"
        );
        let custom_sa = p.text("/serviceAccount/name");
        if !custom_sa.is_empty() {
            assert_eq!(sa, custom_sa, "{what}: serviceAccount.name");
        }

        let subject_ok = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            subjects.as_ref().is_some_and(|s| {
                s.len() == 1
                    && s[0].kind == "ServiceAccount"
                    && s[0].name == sa
                    && s[0].namespace.as_deref() == Some(RELEASE_NAMESPACE)
            })
        };
        let crb = &o.cluster_role_bindings[0];
        assert!(
            subject_ok(&crb.subjects),
            "{what}: ClusterRoleBinding subject"
        );
        assert_eq!(crb.role_ref.kind, "ClusterRole");
        assert_eq!(
            Some(&crb.role_ref.name),
            o.cluster_roles[0].metadata.name.as_ref(),
            "{what}"
        );
        for (rb, role) in o.role_bindings.iter().zip(&o.roles) {
            assert!(subject_ok(&rb.subjects), "{what}: RoleBinding subject");
            assert_eq!(rb.role_ref.kind, "Role");
            assert_eq!(
                Some(&rb.role_ref.name),
                role.metadata.name.as_ref(),
                "{what}"
            );
        }

        // The metrics Service selects the operator pods on the metrics port.
        let svc = &o.services[0];
        let svc_spec = svc.spec.as_ref().expect("service spec");
        let pod_labels = pod
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let selector = svc_spec.selector.clone().unwrap_or_default();
        assert!(!selector.is_empty(), "{what}: Service selector");
        assert!(
            selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
            "{what}: Service selector {selector:?} must match pod labels {pod_labels:?}"
        );
        let match_labels = pod.selector.match_labels.clone().unwrap_or_default();
        assert!(
            match_labels
                .iter()
                .all(|(k, v)| pod_labels.get(k) == Some(v)),
            "{what}: Deployment selector must match its pod labels"
        );
        let port = p.value("/metrics/port").as_i64().expect("metrics.port");
        let ports = svc_spec.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1, "{what}: one Service port");
        assert_eq!(ports[0].name.as_deref(), Some("http-metrics"));
        assert_eq!(i64::from(ports[0].port), port, "{what}: Service port");
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("http-metrics".into()))
        );
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            annotations.get("prometheus.io/port").map(String::as_str),
            Some(port.to_string().as_str()),
            "{what}: prometheus.io/port"
        );

        // ServiceMonitor only when asked for, selecting the Service.
        let want_monitor = p.flag("/metrics/serviceMonitor/enabled");
        assert_eq!(
            o.service_monitors.len(),
            usize::from(want_monitor),
            "{what}: ServiceMonitor"
        );
        for sm in &o.service_monitors {
            let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
            let wanted = sm
                .data
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object);
            let wanted = wanted.unwrap_or_else(|| panic!("{what}: ServiceMonitor selector"));
            assert!(
                wanted
                    .iter()
                    .all(|(k, v)| svc_labels.get(k).map(String::as_str) == v.as_str()),
                "{what}: ServiceMonitor must select the metrics Service"
            );
            assert_eq!(
                sm.data
                    .pointer("/spec/endpoints/0/port")
                    .and_then(Value::as_str),
                Some("http-metrics"),
                "{what}: ServiceMonitor port"
            );
            assert_eq!(
                sm.data
                    .pointer("/spec/endpoints/0/interval")
                    .and_then(Value::as_str),
                Some(p.text("/metrics/serviceMonitor/interval").as_str())
            );
            for (k, v) in p
                .value("/metrics/serviceMonitor/labels")
                .as_object()
                .into_iter()
                .flatten()
            {
                let labels = sm.metadata.labels.clone().unwrap_or_default();
                assert_eq!(
                    labels.get(k).map(String::as_str),
                    v.as_str(),
                    "{what}: label {k}"
                );
            }
        }
    }
}

/// The PgpoolVersions of a catalog ConfigMap's `catalog.yaml`, each parsed strictly.
fn catalog_versions(what: &str, cm: &ConfigMap) -> Vec<PgpoolVersion> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("catalog.yaml"))
        .unwrap_or_else(|| panic!("{what}: catalog ConfigMap without catalog.yaml"));
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{what}: catalog.yaml: {e}"));
        if value.is_null() {
            continue;
        }
        out.push(
            charts::strict_parse(&value).unwrap_or_else(|e| panic!("{what}: catalog entry: {e}")),
        );
    }
    out
}

/// The release holds no PgpoolVersion (its kind is the chart's own CRD, which a fresh
/// cluster may not have in discovery when Helm maps the templates): the catalog is a file in
/// a ConfigMap that the provisioner applies itself (`--catalog-file`).
#[test]
fn the_provisioner_installs_the_design_catalog_unless_turned_off() {
    let Some(all) = rendered("the_provisioner_installs_the_design_catalog_unless_turned_off")
    else {
        return;
    };
    // DESIGN.md §3: name, pgpool image, allowlist.
    let table = [
        ("4.4.5", ">= 4.4.5, <= 4.6.0"),
        ("4.4.8", ">= 4.4.8, <= 4.6.0"),
        ("4.5.0", ">= 4.5.0, <= 4.6.0"),
        ("4.5.3", ">= 4.5.3, <= 4.6.0"),
        ("4.6.0", ">= 4.6.0, <= 4.6.0"),
    ];
    for p in all {
        let catalog_maps: Vec<&ConfigMap> = p
            .objects
            .config_maps
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with("-catalog"))
            })
            .collect();
        let enabled = p.is_provisioner() && p.flag("/catalog/enabled");
        let container = only_container(p);
        let flag = arg_value(container, "--catalog-file");
        if !enabled {
            assert!(catalog_maps.is_empty(), "{}: no catalog", p.what());
            assert_eq!(flag, None, "{}: no --catalog-file", p.what());
            continue;
        }
        assert_eq!(catalog_maps.len(), 1, "{}: one catalog ConfigMap", p.what());
        let cm = catalog_maps[0];
        // The Deployment mounts that ConfigMap where --catalog-file points.
        let spec = p.objects.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == cm.metadata.name.as_deref())
            .unwrap_or_else(|| panic!("{}: the catalog ConfigMap is not a volume", p.what()));
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("{}: the catalog volume is not mounted", p.what()));
        assert_eq!(
            flag.map(str::to_string),
            Some(format!("{}/catalog.yaml", mount.mount_path)),
            "{}: --catalog-file",
            p.what()
        );
        let annotations = p.objects.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert!(
            annotations.contains_key("checksum/catalog"),
            "{}: a changed catalog restarts the provisioner",
            p.what()
        );

        let versions = catalog_versions(&p.what(), cm);
        let got: BTreeMap<String, &PgpoolVersion> = versions
            .iter()
            .map(|v| (v.metadata.name.clone().unwrap_or_default(), v))
            .collect();
        assert_eq!(
            got.len(),
            table.len(),
            "{}: catalog entries {:?}",
            p.what(),
            got.keys()
        );
        for (name, allow) in table {
            let v = got
                .get(name)
                .unwrap_or_else(|| panic!("{}: no PgpoolVersion {name}", p.what()));
            assert_eq!(v.spec.version, name);
            assert_eq!(
                v.spec.pgpool.image,
                format!("ghcr.io/appscode-images/pgpool2:{name}")
            );
            assert_eq!(
                v.spec.exporter.as_ref().map(|e| e.image.as_str()),
                Some("ghcr.io/appscode-images/pgpool2_exporter:v1.2.2")
            );
            let constraints = v.spec.update_constraints.clone().unwrap_or_default();
            assert_eq!(
                constraints.allowlist,
                vec![allow.to_string()],
                "{name}: allowlist"
            );
            assert!(constraints.denylist.is_empty(), "{name}: denylist");
            assert_eq!(v.spec.run_as_user(), 70, "{name}: runAsUser");
            assert!(!v.spec.is_deprecated(), "{name}: deprecated");
            // Every allowlist entry must be readable by the ops-manager.
            assert_eq!(
                pgpool_api::constraints::evaluate(&constraints, "4.6.0"),
                Ok(pgpool_api::constraints::Decision::Allowed),
                "{name} -> 4.6.0"
            );
            assert!(
                v.metadata.namespace.is_none(),
                "{name}: PgpoolVersion is cluster-scoped"
            );
            let labels = v.metadata.labels.clone().unwrap_or_default();
            assert_ne!(
                labels
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str),
                Some("Helm"),
                "{name}: not a Helm object"
            );
        }
    }
}

#[test]
fn the_admission_policy_refuses_deleting_do_not_terminate_pgpools() {
    let Some(all) = rendered("the_admission_policy_refuses_deleting_do_not_terminate_pgpools")
    else {
        return;
    };
    for p in all {
        let o = &p.objects;
        let wanted = p.is_provisioner() && p.flag("/admissionPolicy/enabled");
        assert_eq!(
            o.policies.len(),
            usize::from(wanted),
            "{}: policy",
            p.what()
        );
        assert_eq!(
            o.policy_bindings.len(),
            usize::from(wanted),
            "{}: binding",
            p.what()
        );
        for (policy, binding) in o.policies.iter().zip(&o.policy_bindings) {
            let spec = policy.spec.as_ref().expect("policy spec");
            assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
            let rules = spec
                .match_constraints
                .as_ref()
                .and_then(|m| m.resource_rules.clone())
                .unwrap_or_default();
            assert_eq!(rules.len(), 1);
            assert_eq!(
                rules[0].api_groups.as_deref(),
                Some(&["kubedb.com".to_string()][..])
            );
            assert_eq!(
                rules[0].resources.as_deref(),
                Some(&["pgpools".to_string()][..])
            );
            assert_eq!(
                rules[0].operations.as_deref(),
                Some(&["DELETE".to_string()][..])
            );
            let validations = spec.validations.clone().unwrap_or_default();
            assert_eq!(validations.len(), 1);
            let expression = &validations[0].expression;
            assert!(
                expression.contains("oldObject.spec.deletionPolicy != 'DoNotTerminate'")
                    && expression.contains("!has(oldObject.spec.deletionPolicy)"),
                "the rule refuses DoNotTerminate and tolerates a missing field: {expression}"
            );
            let bspec = binding.spec.as_ref().expect("binding spec");
            assert_eq!(bspec.policy_name.as_ref(), policy.metadata.name.as_ref());
            assert_eq!(
                bspec.validation_actions.as_deref(),
                Some(&["Deny".to_string()][..])
            );
        }
    }
}

#[test]
fn the_non_default_cases_cover_what_the_checks_promise() {
    // The provisioner's ci values must turn each switch the other way, or the checks above
    // would only ever see one side of it.
    let chart = "pgpool-provisioner";
    let cases = charts::cases(chart).expect("cases");
    let defaults = read_yaml(&charts::chart_dir(chart).join("values.yaml"));
    let covered = |pointer: &str, want: &Value| {
        cases.iter().filter_map(|c| c.values.as_ref()).any(|path| {
            let mut values = defaults.clone();
            merge(&mut values, &read_yaml(path));
            values.pointer(pointer) == Some(want)
        })
    };
    for (pointer, want) in [
        ("/replicaCount", Value::from(2)),
        ("/metrics/serviceMonitor/enabled", Value::Bool(true)),
        ("/catalog/enabled", Value::Bool(false)),
        ("/petsetController/enabled", Value::Bool(false)),
        ("/admissionPolicy/enabled", Value::Bool(false)),
    ] {
        assert!(
            covered(pointer, &want),
            "{chart}: no ci values file sets {pointer} = {want}"
        );
    }
    assert!(
        cases.iter().filter_map(|c| c.values.as_ref()).any(|path| {
            read_yaml(path)
                .get("watchNamespace")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        }),
        "{chart}: no ci values file sets watchNamespace"
    );
}

#[test]
fn values_are_documented_line_by_line_and_in_the_readme() {
    for chart in charts::CHARTS {
        let dir = charts::chart_dir(chart);
        let text = std::fs::read_to_string(dir.join("values.yaml")).expect("values.yaml");
        let undocumented = charts::undocumented_value_lines(&text, OPAQUE_VALUES);
        assert!(
            undocumented.is_empty(),
            "{chart}: values.yaml lines without a comment above them: {undocumented:#?}"
        );
        let readme = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|e| panic!("{chart}: README.md: {e}"));
        let values: Value = serde_yaml::from_str(&text).expect("values.yaml is YAML");
        let missing: Vec<String> = charts::value_paths(&values, OPAQUE_VALUES)
            .into_iter()
            .filter(|path| !readme.contains(&format!("| `{path}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "{chart}: README.md has no table row for {missing:?}"
        );
    }
}

#[test]
fn the_e2e_manifests_parse_strictly_and_bind_the_example_backend() {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use pgpool_api::AppBinding;

    let dir = charts::workspace_root().join("e2e/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("e2e/manifests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut kinds = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        for m in charts::split_documents(&text).expect("YAML") {
            let what = format!("{}: {} {}", file.display(), m.kind(), m.name());
            let result = match (m.api_version(), m.kind()) {
                ("v1", "Namespace") => charts::strict_parse::<Namespace>(&m.value).map(|_| ()),
                ("v1", "Secret") => charts::strict_parse::<Secret>(&m.value).map(|_| ()),
                ("v1", "Service") => charts::strict_parse::<Service>(&m.value).map(|_| ()),
                ("apps/v1", "Deployment") => {
                    charts::strict_parse::<Deployment>(&m.value).map(|_| ())
                }
                ("appcatalog.appscode.com/v1alpha1", "AppBinding") => {
                    charts::strict_parse::<AppBinding>(&m.value).map(|_| ())
                }
                (api_version, kind) => panic!("{what}: unexpected {api_version}/{kind}"),
            };
            if let Err(e) = result {
                panic!("{what}: {e}");
            }
            kinds.insert((m.kind().to_string(), m.name().to_string()));
        }
    }
    for (kind, name) in [
        ("Namespace", "demo"),
        ("Secret", "ha-postgres-auth"),
        ("Service", "ha-postgres"),
        ("Deployment", "ha-postgres"),
        ("AppBinding", "ha-postgres"),
    ] {
        assert!(
            kinds.contains(&(kind.to_string(), name.to_string())),
            "e2e/manifests/ has no {kind} {name}"
        );
    }
    // The AppBinding is the example's, unchanged.
    let example =
        std::fs::read_to_string(charts::workspace_root().join("examples/appbinding.yaml"))
            .expect("examples/appbinding.yaml");
    let copy = std::fs::read_to_string(dir.join("appbinding.yaml")).expect("appbinding.yaml");
    assert_eq!(
        copy, example,
        "e2e/manifests/appbinding.yaml must equal examples/appbinding.yaml"
    );
}
