//! Every example manifest validates against the generated CRD schema the way the API server
//! applies it (structure, required fields, enums, ranges, unknown fields under strict field
//! validation, CEL rules); every bad fixture is rejected for its own reason.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crd_for(api_version: &str, kind: &str) -> Option<CustomResourceDefinition> {
    let (group, version) = api_version.split_once('/')?;
    pgpool_api::crds::all().into_iter().find(|c| {
        c.spec.group == group
            && c.spec.names.kind == kind
            && c.spec.versions.iter().any(|v| v.name == version)
    })
}

/// OpenAPI v3 as the API server reads it, rewritten into plain JSON Schema: `nullable` becomes a
/// null type, and objects that list properties reject unknown fields (kubectl's default strict
/// field validation) unless they preserve unknown fields.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, val) in map {
                if k == "nullable" {
                    continue;
                }
                out.insert(k.clone(), to_json_schema(val));
            }
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type")
            {
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            let preserves =
                map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties")
                && !preserves
                && !map.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// Validate an object; returns every error message (empty when valid).
fn validate(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let crd =
        crd_for(api_version, kind).unwrap_or_else(|| panic!("no CRD for {api_version} {kind}"));
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    let mut json_schema = to_json_schema(&schema);
    // apiVersion, kind and metadata are validated by the API server itself.
    json_schema["properties"]["metadata"] = serde_json::json!({"type": "object"});
    json_schema["properties"]["apiVersion"] = serde_json::json!({"type": "string"});
    json_schema["properties"]["kind"] = serde_json::json!({"type": "string"});
    let validator = jsonschema::validator_for(&json_schema).expect("schema compiles");
    for e in validator.iter_errors(obj) {
        errors.push(format!("{}: {}", e.instance_path(), e));
    }
    // Like the API server, report CEL rule failures together with the schema's.
    if let Err(es) = kube_cel::Validator::new().validate(&schema, obj, old) {
        for e in es.as_slice() {
            errors.push(format!("{}: {}", e.field_path, e.message));
        }
    }
    errors
}

fn load_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn deserializes(obj: &Value) {
    let kind = obj["kind"].as_str().unwrap();
    let res = match kind {
        "Pgpool" => serde_json::from_value::<pgpool_api::Pgpool>(obj.clone()).map(|_| ()),
        "PgpoolVersion" => {
            serde_json::from_value::<pgpool_api::PgpoolVersion>(obj.clone()).map(|_| ())
        }
        "PgpoolOpsRequest" => {
            serde_json::from_value::<pgpool_api::PgpoolOpsRequest>(obj.clone()).map(|_| ())
        }
        "AppBinding" => serde_json::from_value::<pgpool_api::AppBinding>(obj.clone()).map(|_| ()),
        "PetSet" => serde_json::from_value::<pgpool_api::PetSet>(obj.clone()).map(|_| ()),
        other => panic!("unexpected kind {other}"),
    };
    res.unwrap_or_else(|e| panic!("{kind} does not deserialize: {e}"));
}

fn check_examples(dir: &Path) -> usize {
    let mut n = 0;
    for file in yaml_files(dir) {
        for obj in load_docs(&file) {
            deserializes(&obj);
            let errors = validate(&obj, None);
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn repository_examples_are_valid() {
    assert_eq!(check_examples(&repo_root().join("examples")), 10);
}

#[test]
fn shared_examples_are_valid_when_present() {
    let shared = repo_root().join("../shared/examples");
    if !shared.exists() {
        eprintln!("skipping: {} not present", shared.display());
        return;
    }
    assert!(check_examples(&shared) >= 4);
}

#[test]
fn bad_fixtures_are_rejected_for_their_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let files = yaml_files(&dir);
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()))
            .to_string();
        let obj = load_docs(&file).remove(0);
        let errors = validate(&obj, None);
        assert!(
            errors.iter().any(|e| e.contains(&expect)),
            "{}: expected an error containing {expect:?}, got {errors:?}",
            file.display()
        );
    }
}

#[test]
fn ops_request_spec_is_immutable() {
    let old = load_docs(&repo_root().join("examples/update-version.yaml")).remove(0);
    assert!(
        validate(&old, Some(&old)).is_empty(),
        "an unchanged update passes"
    );
    let mut new = old.clone();
    new["spec"]["updateVersion"]["targetVersion"] = "4.5.3".into();
    let errors = validate(&new, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("spec is immutable")),
        "{errors:?}"
    );
}
