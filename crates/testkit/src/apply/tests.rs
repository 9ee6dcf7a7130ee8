//! Unit tests of field ownership and server-side apply.

use super::*;
use serde_json::json;

fn main() -> Scope {
    Scope::Main {
        status_subresource: true,
    }
}

#[test]
fn reapply_removes_dropped_fields_but_keeps_others() {
    let mut managed = Managed::new();
    let a1 = scoped(
        &json!({"spec": {"a": 1, "b": 2}, "metadata": {"labels": {"x": "1"}}}),
        main(),
    );
    let o1 = apply(None, &a1, "m1", false, &mut managed).unwrap();
    // Another manager sets a different field.
    let b1 = scoped(&json!({"spec": {"c": 3}}), main());
    let o2 = apply(Some(&o1), &b1, "m2", false, &mut managed).unwrap();
    assert_eq!(o2["spec"], json!({"a": 1, "b": 2, "c": 3}));
    // m1 stops applying b and the label.
    let a2 = scoped(&json!({"spec": {"a": 1}}), main());
    let o3 = apply(Some(&o2), &a2, "m1", false, &mut managed).unwrap();
    assert_eq!(o3["spec"], json!({"a": 1, "c": 3}));
    assert!(o3.get("metadata").is_none());
}

#[test]
fn conflicts_and_force() {
    let mut managed = Managed::new();
    let o1 = apply(
        None,
        &scoped(&json!({"spec": {"r": 1}}), main()),
        "m1",
        false,
        &mut managed,
    )
    .unwrap();
    let err = apply(
        Some(&o1),
        &scoped(&json!({"spec": {"r": 2}}), main()),
        "m2",
        false,
        &mut managed,
    )
    .unwrap_err();
    assert_eq!(err[0].manager, "m1");
    assert_eq!(err[0].field, ".spec.r");
    // Same value: shared ownership, no conflict.
    apply(
        Some(&o1),
        &scoped(&json!({"spec": {"r": 1}}), main()),
        "m3",
        false,
        &mut managed,
    )
    .unwrap();
    let o2 = apply(
        Some(&o1),
        &scoped(&json!({"spec": {"r": 2}}), main()),
        "m2",
        true,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o2["spec"]["r"], 2);
    // m1 lost ownership: re-applying without r does not remove m2's value.
    let o3 = apply(
        Some(&o2),
        &scoped(&json!({"spec": {"z": 0}}), main()),
        "m1",
        false,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o3["spec"], json!({"r": 2, "z": 0}));
}

#[test]
fn finalizers_are_a_set() {
    let mut managed = Managed::new();
    let base = json!({"metadata": {"finalizers": ["x"]}});
    let o1 = apply(
        Some(&base),
        &scoped(&json!({"metadata": {"finalizers": ["a"]}}), main()),
        "m1",
        false,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o1["metadata"]["finalizers"], json!(["x", "a"]));
    let o2 = apply(
        Some(&o1),
        &scoped(&json!({"spec": {}}), main()),
        "m1",
        false,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o2["metadata"]["finalizers"], json!(["x"]));
}

#[test]
fn status_scope() {
    let v = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": 1}, "status": {"s": 1}});
    assert_eq!(scoped(&v, main()), json!({"spec": {"a": 1}}));
    assert_eq!(scoped(&v, Scope::Status), json!({"status": {"s": 1}}));
    assert_eq!(
        scoped(
            &v,
            Scope::Main {
                status_subresource: false
            }
        ),
        json!({"spec": {"a": 1}, "status": {"s": 1}})
    );
}

#[test]
fn updates_take_ownership_and_removed_fields_are_unowned() {
    let mut managed = Managed::new();
    let a = manager_key("a", "apply");
    let o1 = apply(
        None,
        &scoped(&json!({"spec": {"holder": "a", "t": 1}}), main()),
        &a,
        false,
        &mut managed,
    )
    .unwrap();
    // Someone else removes the fields with a non-apply write: nobody owns them any more.
    let o2 = json!({"spec": {}});
    record_update(&mut managed, Some(&o1), &o2, &manager_key("b", "update"));
    prune(&mut managed, &o2);
    let o3 = apply(
        Some(&o2),
        &scoped(&json!({"spec": {"holder": "b"}}), main()),
        &manager_key("b", "apply"),
        false,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o3["spec"]["holder"], "b");
    // An update changing b's field takes it over: b's re-apply now conflicts with c.
    let o4 = json!({"spec": {"holder": "c"}});
    record_update(&mut managed, Some(&o3), &o4, &manager_key("c", "update"));
    let err = apply(
        Some(&o4),
        &scoped(&json!({"spec": {"holder": "b"}}), main()),
        &manager_key("b", "apply"),
        false,
        &mut managed,
    )
    .unwrap_err();
    assert_eq!(err[0].manager, "c");
    // b no longer owns holder, so applying without it does not remove c's value.
    let o5 = apply(
        Some(&o4),
        &scoped(&json!({"spec": {"other": 1}}), main()),
        &manager_key("b", "apply"),
        false,
        &mut managed,
    )
    .unwrap();
    assert_eq!(o5["spec"]["holder"], "c");
}
