//! The operators' `/metrics`: scraping them through the API server's pod proxy (or from a
//! URL, for operators run on the developer's machine), and reading the text format.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, with `_count`/`_sum`/`_bucket` suffixes as written.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Reads the Prometheus text exposition format; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].find('}')? + open;
            (&line[..=close], &line[close + 1..])
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], &line[space..])
        }
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.find('{') {
        Some(open) => (
            &series[..open],
            parse_labels(&series[open + 1..series.len() - 1])?,
        ),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        labels.insert(key, value);
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Some(labels)
}

/// Sum of the samples named `name` whose labels include all of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Where an operator's metrics are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A URL such as `http://127.0.0.1:8080/metrics` (an operator run locally).
    Url(String),
    /// The pods labelled `app.kubernetes.io/name=<app>` in any namespace (the chart's).
    Pods {
        /// The `app.kubernetes.io/name` label value.
        app: String,
    },
}

impl Endpoint {
    /// `$<url_env>` if set, else the chart's pods of `app`.
    pub fn from_env(url_env: &str, app: &str) -> Endpoint {
        match std::env::var(url_env) {
            Ok(url) if !url.trim().is_empty() => Endpoint::Url(url.trim().to_string()),
            _ => Endpoint::Pods {
                app: app.to_string(),
            },
        }
    }
}

/// The metrics text of each replica of an operator (only the leader runs controllers, so
/// callers look at every replica).
pub async fn scrape(client: &kube::Client, endpoint: &Endpoint) -> anyhow::Result<Vec<String>> {
    match endpoint {
        Endpoint::Url(url) => Ok(vec![http_get(url).await?]),
        Endpoint::Pods { app } => {
            let pods: Api<Pod> = Api::all(client.clone());
            let list = pods
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={app}")))
                .await
                .with_context(|| format!("listing the {app} pods"))?;
            let mut texts = Vec::new();
            for pod in list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            {
                let (Some(name), Some(namespace)) = (
                    pod.metadata.name.as_deref(),
                    pod.metadata.namespace.as_deref(),
                ) else {
                    continue;
                };
                let port = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some("http-metrics"))
                    .map(|p| p.container_port)
                    .unwrap_or(8080);
                let path =
                    format!("/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy/metrics");
                let request = http::Request::get(&path)
                    .body(Vec::new())
                    .context("building the proxy request")?;
                let text = client
                    .request_text(request)
                    .await
                    .with_context(|| format!("GET {path}"))?;
                texts.push(text);
            }
            if texts.is_empty() {
                bail!(
                    "no running pod labelled app.kubernetes.io/name={app}: install the chart, or run the operator locally and set its metrics URL (E2E_PROVISIONER_METRICS_URL / E2E_OPS_MANAGER_METRICS_URL)"
                );
            }
            Ok(texts)
        }
    }
}

/// A plain HTTP/1.0 GET (no TLS), for an operator's metrics on the local machine.
async fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url}: {status}");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP pgpool_operator_ops_requests Requests by type and phase.
# TYPE pgpool_operator_ops_requests gauge
pgpool_operator_ops_requests{phase="Successful",type="UpdateVersion"} 1
pgpool_operator_ops_requests{phase="Failed",type="UpdateVersion"} 0
pgpool_operator_ops_request_duration_seconds_count{result="success",type="UpdateVersion"} 2
pgpool_operator_reconcile_total{controller="pgpool",result="ok"} 17
pgpool_operator_reconcile_total{controller="pgpool",result="error"} 3
pgpool_operator_reconcile_total{controller="petset",result="ok"} 5
weird_label{a="x\"y, z",b="2"} 1.5e0
plain_metric 42
"#;

    #[test]
    fn samples_are_read_and_summed_by_labels() {
        let samples = parse(TEXT);
        assert_eq!(
            sum(
                &samples,
                "pgpool_operator_ops_requests",
                &[("type", "UpdateVersion"), ("phase", "Successful")]
            ),
            1.0
        );
        assert_eq!(
            sum(
                &samples,
                "pgpool_operator_reconcile_total",
                &[("controller", "pgpool")]
            ),
            20.0
        );
        assert_eq!(sum(&samples, "plain_metric", &[]), 42.0);
        assert_eq!(
            sum(&samples, "weird_label", &[("a", "x\"y, z"), ("b", "2")]),
            1.5
        );
        assert_eq!(sum(&samples, "missing", &[]), 0.0);
    }

    #[tokio::test]
    async fn a_local_endpoint_is_read_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            socket
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nplain_metric 42\n")
                .await
                .expect("write");
            request
        });
        let text = http_get(&format!("http://{addr}/metrics"))
            .await
            .expect("get");
        assert_eq!(sum(&parse(&text), "plain_metric", &[]), 42.0);
        let request = server.await.expect("server");
        assert!(
            request.starts_with("GET /metrics HTTP/1.0\r\n"),
            "{request}"
        );
    }
}
