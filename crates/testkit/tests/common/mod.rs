//! Shared test helpers: a namespaced test CRD with status and scale subresources.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A test kind with status and scale subresources.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "test.testkit.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
pub struct WidgetSpec {
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WidgetStatus {
    #[serde(default)]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

pub fn widget(ns: &str, name: &str, replicas: i32) -> Widget {
    let mut w = Widget::new(
        name,
        WidgetSpec {
            replicas,
            ..WidgetSpec::default()
        },
    );
    w.metadata.namespace = Some(ns.to_string());
    w
}

/// A server that also serves the Widget CRD.
pub fn server() -> testkit::TestServer {
    let s = testkit::TestServer::new();
    s.register_crd(&<Widget as kube::CustomResourceExt>::crd());
    s
}

/// Fail the test if `f` does not finish within 10 seconds.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out waiting for a condition")
}

/// Poll `cond` every 10ms until it is true (at most 10 seconds).
pub async fn eventually<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
