//! Where a real kube-apiserver behaves in a way the operators must survive, testkit behaves
//! the same (each case was seen on a real kube-apiserver 1.36).

mod common;

use common::server;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn revision(name: &str, data: serde_json::Value, number: i64) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A merge patch is applied to the server's Go encoding of the object, which escapes `&` in
/// `data`: bytes that differ from the stored ones make `data` "changed", and it is immutable.
#[tokio::test]
async fn a_revision_whose_data_is_not_go_encoded_refuses_every_patch() {
    let s = server();
    let revs: Api<ControllerRevision> = Api::namespaced(s.client(), "default");
    let pp = PostParams::default();
    let renumber = Patch::Merge(json!({"revision": 2}));
    revs.create(&pp, &revision("amp", json!({"a": "x && y"}), 1))
        .await
        .unwrap();
    let (status, message) = code(
        revs.patch("amp", &PatchParams::default(), &renumber)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(message.contains("data: Invalid value"), "{message}");
    assert!(message.contains("field is immutable"), "{message}");
    // Server-side apply goes through the same encoding.
    let apply = PatchParams::apply("test").force();
    let body = Patch::Apply(json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "amp"}, "revision": 3
    }));
    assert_eq!(
        code(revs.patch("amp", &apply, &body).await.unwrap_err()).0,
        422
    );

    // Data already in Go's form takes the patch.
    revs.create(&pp, &revision("plain", json!({"a": 1, "b": 2}), 1))
        .await
        .unwrap();
    let patched = revs
        .patch("plain", &PatchParams::default(), &renumber)
        .await
        .unwrap();
    assert_eq!(patched.revision, 2);

    // A PUT carries its own bytes: the same bytes as stored are accepted, others refused.
    let mut current = revs.get("amp").await.unwrap();
    current.revision = 4;
    assert_eq!(
        revs.replace("amp", &pp, &current).await.unwrap().revision,
        4
    );
    current = revs.get("amp").await.unwrap();
    current.data = Some(RawExtension(json!({"a": "x && z"})));
    assert_eq!(
        code(revs.replace("amp", &pp, &current).await.unwrap_err()).0,
        422
    );

    // Delete and create again under the same name is how a revision gets a new number.
    revs.delete("amp", &DeleteParams::default()).await.unwrap();
    let again = revs
        .create(&pp, &revision("amp", json!({"a": "x && y"}), 5))
        .await
        .unwrap();
    assert_eq!(again.revision, 5);
}
