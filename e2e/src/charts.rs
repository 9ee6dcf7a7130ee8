//! Rendering the Helm charts and parsing what they render, strictly.
//!
//! k8s-openapi types ignore fields they do not know, so a misspelled field name in a
//! template would parse fine and be dropped by the API server without a word. [`strict_parse`]
//! closes that gap: it parses a manifest into its type, serializes the result again and
//! compares it with the input; any field the type did not keep is reported with its path.
//!
//! The cases rendered for each chart are its default values plus every
//! `charts/<chart>/ci/<case>-values.yaml`, so `scripts/charts-check.sh` and the tests agree on
//! them without a second list.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The namespace every chart is rendered for.
pub const RELEASE_NAMESPACE: &str = "pgpool-system";

/// The charts of this repository, also used as their release names.
pub const CHARTS: [&str; 2] = ["pgpool-provisioner", "pgpool-ops-manager"];

/// Environment variable naming a directory of rendered charts (`<dir>/<chart>/<case>.yaml`),
/// as `make charts-check` writes them.
pub const RENDERED_DIR_ENV: &str = "CHARTS_RENDERED_DIR";

/// What can go wrong while rendering or parsing a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// helm could not be started or failed.
    #[error("helm template {chart} ({case}) failed: {message}")]
    Helm {
        /// The chart.
        chart: String,
        /// The values case.
        case: String,
        /// helm's error output.
        message: String,
    },
    /// A rendered document is not YAML.
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        /// The template the document came from.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A manifest does not parse into its type, or loses fields doing so.
    #[error("{kind}: {message}")]
    Strict {
        /// `apiVersion/kind` of the manifest.
        kind: String,
        /// What did not parse, or which fields were not kept.
        message: String,
    },
}

/// One values case of a chart: the defaults, or a `ci/<name>-values.yaml` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// `default`, or the file name without `-values.yaml`.
    pub name: String,
    /// The values file; `None` for the defaults.
    pub values: Option<PathBuf>,
}

/// The rendered output of one chart with one values case.
#[derive(Debug, Clone)]
pub struct Rendering {
    /// The chart name.
    pub chart: String,
    /// The case name.
    pub case: String,
    /// What `helm template` printed.
    pub text: String,
}

/// One document of a rendering.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The template it came from (helm's `# Source:` comment), or `document <n>`.
    pub source: String,
    /// The document as JSON.
    pub value: Value,
}

impl Manifest {
    /// `apiVersion` of the manifest, or "".
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// `kind` of the manifest, or "".
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    /// `metadata.name` of the manifest, or "".
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// `metadata.namespace` of the manifest, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
}

/// Root of the workspace (the parent of the e2e crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Directory of a chart.
pub fn chart_dir(chart: &str) -> PathBuf {
    workspace_root().join("charts").join(chart)
}

/// The values cases of a chart: `default` first, then each `ci/<name>-values.yaml`, by name.
pub fn cases(chart: &str) -> Result<Vec<Case>, ChartError> {
    let mut cases = vec![Case {
        name: "default".to_string(),
        values: None,
    }];
    let ci = chart_dir(chart).join("ci");
    let entries = match std::fs::read_dir(&ci) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cases),
        Err(source) => return Err(ChartError::Read { path: ci, source }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ChartError::Read {
            path: ci.clone(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file_name.strip_suffix("-values.yaml") {
            found.push(Case {
                name: name.to_string(),
                values: Some(entry.path()),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    cases.extend(found);
    Ok(cases)
}

/// A helm binary: `$HELM`, else the tool cache of `scripts/helm.sh`
/// (`.cache/tools/bin/helm`), else `helm` on PATH; only one that answers `helm version`.
pub fn find_helm() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(helm) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        candidates.push(PathBuf::from(helm));
    }
    candidates.push(workspace_root().join(".cache/tools/bin/helm"));
    candidates.push(PathBuf::from("helm"));
    candidates.into_iter().find(|helm| {
        Command::new(helm)
            .arg("version")
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    })
}

/// Renders one case of a chart with `helm template`, release name = chart name, namespace
/// [`RELEASE_NAMESPACE`].
pub fn render_with_helm(helm: &Path, chart: &str, case: &Case) -> Result<String, ChartError> {
    let mut cmd = Command::new(helm);
    cmd.arg("template")
        .arg(chart)
        .arg(chart_dir(chart))
        .arg("--namespace")
        .arg(RELEASE_NAMESPACE);
    if let Some(values) = &case.values {
        cmd.arg("--values").arg(values);
    }
    let out = cmd.output().map_err(|e| ChartError::Helm {
        chart: chart.to_string(),
        case: case.name.clone(),
        message: format!("cannot run {}: {e}", helm.display()),
    })?;
    if !out.status.success() {
        return Err(ChartError::Helm {
            chart: chart.to_string(),
            case: case.name.clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the renderings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files written by `make charts-check` (`$CHARTS_RENDERED_DIR`).
    Dir(PathBuf),
    /// Render now with this helm.
    Helm(PathBuf),
}

/// `$CHARTS_RENDERED_DIR` if set, else a helm found by [`find_helm`], else `None`.
pub fn source() -> Option<Source> {
    if let Some(dir) = std::env::var_os(RENDERED_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(Source::Dir(PathBuf::from(dir)));
    }
    find_helm().map(Source::Helm)
}

/// Every case of every chart in [`CHARTS`], from `source`. A rendered directory must hold
/// every case (`<dir>/<chart>/<case>.yaml`).
pub fn load_all(source: &Source) -> Result<Vec<Rendering>, ChartError> {
    let mut all = Vec::new();
    for chart in CHARTS {
        for case in cases(chart)? {
            let text = match source {
                Source::Dir(dir) => {
                    let path = dir.join(chart).join(format!("{}.yaml", case.name));
                    std::fs::read_to_string(&path)
                        .map_err(|source| ChartError::Read { path, source })?
                }
                Source::Helm(helm) => render_with_helm(helm, chart, &case)?,
            };
            all.push(Rendering {
                chart: chart.to_string(),
                case: case.name,
                text,
            });
        }
    }
    Ok(all)
}

/// Splits `helm template` output into its documents, skipping empty ones.
pub fn split_documents(text: &str) -> Result<Vec<Manifest>, ChartError> {
    let mut docs = Vec::new();
    let mut chunks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            chunks.push(Vec::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push(line);
        }
    }
    for (index, chunk) in chunks.iter().enumerate() {
        let source = chunk
            .iter()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(str::to_string)
            .unwrap_or_else(|| format!("document {}", index + 1));
        let body = chunk.join("\n");
        let value: Value = serde_yaml::from_str(&body).map_err(|e| ChartError::Yaml {
            source_name: source.clone(),
            message: e.to_string(),
        })?;
        if !value.is_null() {
            docs.push(Manifest { source, value });
        }
    }
    Ok(docs)
}

/// Parses `value` into `T` and fails when `T` did not keep every field of the input (a
/// misspelled or misplaced field) or added one.
pub fn strict_parse<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, ChartError> {
    let kind = format!(
        "{}/{}",
        value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        value.get("kind").and_then(Value::as_str).unwrap_or("?")
    );
    let parsed: T = serde_json::from_value(value.clone()).map_err(|e| ChartError::Strict {
        kind: kind.clone(),
        message: e.to_string(),
    })?;
    let again = serde_json::to_value(&parsed).map_err(|e| ChartError::Strict {
        kind: kind.clone(),
        message: e.to_string(),
    })?;
    let diffs = differences(value, &again);
    if diffs.is_empty() {
        Ok(parsed)
    } else {
        Err(ChartError::Strict {
            kind,
            message: format!("fields not kept by the type: {}", diffs.join("; ")),
        })
    }
}

/// Paths where `output` differs from `input`: fields missing from the output (unknown to
/// the type), fields the output added, and values that changed.
pub fn differences(input: &Value, output: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_at("", input, output, &mut diffs);
    diffs
}

fn diff_at(path: &str, input: &Value, output: &Value, diffs: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match b.get(key) {
                    Some(vb) => diff_at(&sub, va, vb, diffs),
                    None => diffs.push(format!("{sub} is not a known field")),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diffs.push(format!("{sub} appeared when serialized again"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff_at(&format!("{path}[{i}]"), va, vb, diffs);
            }
        }
        (a, b) if a == b => {}
        (a, b) => diffs.push(format!("{path}: {a} became {b}")),
    }
}

/// Dotted paths of the values in a values.yaml: descent stops at lists, at empty maps and at
/// keys in `opaque` (values documented as a whole, such as `resources`).
pub fn value_paths(values: &Value, opaque: &[&str]) -> Vec<String> {
    let mut paths = Vec::new();
    collect_paths("", values, opaque, &mut paths);
    paths
}

fn collect_paths(prefix: &str, value: &Value, opaque: &[&str], out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() && !opaque.contains(&prefix) => {
            for (key, sub) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                collect_paths(&path, sub, opaque, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Lines of a values.yaml that set a value (`key: value`, `key: []`, `key: {}`) with no
/// comment line right above them. List items and their contents are not checked, nor the
/// contents of the keys in `opaque` (dotted paths of values documented as a whole).
pub fn undocumented_value_lines(values_yaml: &str, opaque: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    let mut previous = "";
    let mut list_indent: Option<usize> = None;
    let mut parents: Vec<(usize, String)> = Vec::new();
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('#') {
            previous = trimmed;
            continue;
        }
        if let Some(li) = list_indent {
            if indent > li || (indent == li && trimmed.starts_with("- ")) {
                previous = trimmed;
                continue;
            }
            list_indent = None;
        }
        if trimmed.starts_with("- ") {
            list_indent = Some(indent);
            previous = trimmed;
            continue;
        }
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let parent_path = parents
            .iter()
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let inside_opaque = opaque
            .iter()
            .any(|o| parent_path == *o || parent_path.starts_with(&format!("{o}.")));
        if let Some((key, rest)) = trimmed.split_once(':') {
            let sets_value = !rest.trim().is_empty();
            if sets_value && !inside_opaque && !previous.starts_with('#') {
                missing.push(line.to_string());
            }
            parents.push((indent, key.trim().to_string()));
        }
        previous = trimmed;
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(container: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [container]}
                }
            }
        })
    }

    #[test]
    fn a_well_formed_manifest_parses() {
        let value = deployment(json!({
            "name": "c", "image": "i",
            "securityContext": {"readOnlyRootFilesystem": true},
            "ports": [{"name": "http-metrics", "containerPort": 8080}]
        }));
        let parsed: Deployment = strict_parse(&value).expect("parses");
        assert_eq!(parsed.metadata.name.as_deref(), Some("x"));
    }

    #[test]
    fn a_misspelled_field_fails_with_its_path() {
        let value = deployment(json!({
            "name": "c", "image": "i",
            "securityContext": {"readOnlyRootFileSystem": true}
        }));
        let err = strict_parse::<Deployment>(&value).expect_err("typo must fail");
        let message = err.to_string();
        assert!(
            message.contains(
                "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem is not a known field"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_null_field_fails() {
        let value = deployment(json!({"name": "c", "image": "i", "args": null}));
        let err = strict_parse::<Deployment>(&value).expect_err("null must fail");
        assert!(err.to_string().contains("args"), "{err}");
    }

    #[test]
    fn a_wrong_type_fails() {
        let value =
            deployment(json!({"name": "c", "image": "i", "ports": [{"containerPort": "x"}]}));
        assert!(strict_parse::<Deployment>(&value).is_err());
    }

    #[test]
    fn documents_are_split_with_their_sources() {
        let text = "---\n# Source: c/templates/a.yaml\nkind: A\n---\n# Source: c/templates/empty.yaml\n\n---\n# Source: c/templates/b.yaml\nkind: B\n";
        let docs = split_documents(text).expect("splits");
        let seen: Vec<(&str, &str)> = docs.iter().map(|d| (d.source.as_str(), d.kind())).collect();
        assert_eq!(
            seen,
            vec![("c/templates/a.yaml", "A"), ("c/templates/b.yaml", "B")]
        );
    }

    #[test]
    fn value_paths_stop_at_lists_empty_maps_and_opaque_keys() {
        let values = json!({
            "a": 1,
            "b": {"c": "x", "d": {}},
            "e": [1, 2],
            "resources": {"limits": {"memory": "1Mi"}}
        });
        let mut paths = value_paths(&values, &["resources"]);
        paths.sort();
        assert_eq!(paths, vec!["a", "b.c", "b.d", "e", "resources"]);
    }

    #[test]
    fn undocumented_value_lines_are_found() {
        let yaml = "# ok\na: 1\nb: 2\nparent:\n  # ok\n  c: x\n  e: y\nlist:\n  - name: x\n    value: y\n# ok\nd: 3\n# whole\nres:\n  limits:\n    cpu: 1m\n";
        assert_eq!(
            undocumented_value_lines(yaml, &["res"]),
            vec!["b: 2".to_string(), "  e: y".to_string()]
        );
    }
}
