//! Client pods that query PostgreSQL through the pooler with `psql`, using the AppBinding's
//! credentials from its Secret (passed to the pod by reference: the test never reads them).

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};
use pgpool_api::AppBinding;
use serde_json::json;

use crate::wait;

/// Label on every client pod, so leftovers can be found.
pub const CLIENT_LABEL: &str = "e2e.pgpool-operator.io/client";

/// Where the client connects, and with which credentials.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name, for example `pp-update.demo.svc`.
    pub host: String,
    /// Port, for example 9999.
    pub port: i32,
    /// Secret with keys `username` and `password` (the AppBinding's).
    pub secret: String,
    /// Database to connect to.
    pub database: String,
}

impl Target {
    /// The Pgpool's client Service, with the credentials of the AppBinding it points at.
    pub async fn through_pgpool(
        client: &kube::Client,
        namespace: &str,
        pgpool: &str,
        appbinding: &str,
    ) -> anyhow::Result<Target> {
        let bindings: Api<AppBinding> = Api::namespaced(client.clone(), namespace);
        let binding = bindings
            .get(appbinding)
            .await
            .with_context(|| format!("reading AppBinding {namespace}/{appbinding}"))?;
        let secret = binding
            .spec
            .secret
            .as_ref()
            .map(|s| s.name.clone())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("AppBinding {appbinding} names no Secret"))?;
        Ok(Target {
            host: format!(
                "{}.{namespace}.svc",
                pgpool_api::names::primary_service(pgpool)
            ),
            port: pgpool_api::names::PORT_PRIMARY,
            secret,
            database: "postgres".to_string(),
        })
    }
}

/// A client pod running `script` (sh) with libpq's environment set for `target`.
fn client_pod(name: &str, image: &str, target: &Target, script: &str) -> anyhow::Result<Pod> {
    let secret_env = |var: &str, key: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": target.secret, "key": key}}});
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {CLIENT_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 999,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "psql",
                "image": image,
                "command": ["sh", "-c", script],
                "env": [
                    {"name": "PGHOST", "value": target.host},
                    {"name": "PGPORT", "value": target.port.to_string()},
                    {"name": "PGDATABASE", "value": target.database},
                    {"name": "PGCONNECT_TIMEOUT", "value": "5"},
                    {"name": "PGAPPNAME", "value": "pgpool-operator-e2e"},
                    secret_env("PGUSER", "username"),
                    secret_env("PGPASSWORD", "password"),
                ],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    });
    serde_json::from_value(pod).context("building the client pod")
}

async fn recreate(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    delete_and_wait(api, &name).await?;
    api.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    Ok(())
}

/// Deletes pod `name` if it exists and waits until it is gone.
pub async fn delete_and_wait(api: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    match api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => wait::until_gone(api, name, Duration::from_secs(60)).await,
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting pod {name}")),
    }
}

/// `SELECT 1` through `target` from a pod; returns the pod's output. The pod tries up to 6
/// times, 2 s apart, since a Service can lag its pods' readiness by a moment; it fails
/// when no attempt returns `1`.
pub async fn select_one(
    client: &kube::Client,
    namespace: &str,
    image: &str,
    target: &Target,
    timeout: Duration,
) -> anyhow::Result<String> {
    const NAME: &str = "e2e-select-1";
    let script = r#"for attempt in 1 2 3 4 5 6; do
  if out=$(psql -XAtc 'SELECT 1' 2>&1) && [ "$out" = 1 ]; then echo "result: $out"; exit 0; fi
  echo "attempt $attempt failed: $out"
  sleep 2
done
exit 1"#;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    recreate(&api, &client_pod(NAME, image, target, script)?).await?;
    let pod = wait::for_object(&api, NAME, "psql pod finished", timeout, |p: &Pod| {
        matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    })
    .await?;
    let logs = api
        .logs(NAME, &LogParams::default())
        .await
        .context("reading the psql pod's output")?;
    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
    delete_and_wait(&api, NAME).await?;
    if phase != "Succeeded" || !logs.lines().any(|l| l == "result: 1") {
        bail!(
            "SELECT 1 through {}:{} failed (pod {phase}):\n{logs}",
            target.host,
            target.port
        );
    }
    Ok(logs)
}

/// A pod that runs `SELECT 1` through the pooler twice a second until deleted, printing
/// one line per query: `QUERY <unix seconds> ok` or `QUERY <unix seconds> fail <error>`.
pub struct QueryLoop {
    api: Api<Pod>,
    name: String,
}

impl QueryLoop {
    /// Starts the loop (replacing a leftover pod of the same name) and waits until it runs.
    pub async fn start(
        client: &kube::Client,
        namespace: &str,
        image: &str,
        target: &Target,
    ) -> anyhow::Result<QueryLoop> {
        let name = "e2e-query-loop".to_string();
        let script = r#"trap 'exit 0' TERM INT
while :; do
  if out=$(psql -XAtc 'SELECT 1' 2>&1) && [ "$out" = 1 ]; then
    echo "QUERY $(date +%s) ok"
  else
    echo "QUERY $(date +%s) fail $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)"
  fi
  sleep 0.5
done"#;
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        recreate(&api, &client_pod(&name, image, target, script)?).await?;
        wait::for_object(
            &api,
            &name,
            "query loop pod running",
            Duration::from_secs(120),
            |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
        )
        .await?;
        Ok(QueryLoop { api, name })
    }

    /// What the loop printed so far.
    pub async fn log(&self) -> anyhow::Result<QueryLog> {
        let text = self
            .api
            .logs(&self.name, &LogParams::default())
            .await
            .context("reading the query loop's output")?;
        Ok(QueryLog::parse(&text))
    }

    /// Waits until the loop has `count` successful queries at or after `since` (unix
    /// seconds), reading its output once a second.
    pub async fn wait_for_successes(
        &self,
        since: i64,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<QueryLog> {
        let polling = async {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                let log = self.log().await?;
                if log.results.iter().filter(|r| r.ok && r.at >= since).count() >= count {
                    return anyhow::Ok(log);
                }
            }
        };
        match tokio::time::timeout(timeout, polling).await {
            Ok(result) => result,
            Err(_) => {
                let log = self.log().await.unwrap_or_default();
                bail!(
                    "the query loop did not get {count} successful queries within {} s; last lines: {:?}",
                    timeout.as_secs(),
                    log.results.iter().rev().take(5).collect::<Vec<_>>()
                )
            }
        }
    }

    /// Stops the loop and deletes its pod.
    pub async fn stop(self) -> anyhow::Result<()> {
        delete_and_wait(&self.api, &self.name).await
    }
}

/// One query of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// When it ran (unix seconds).
    pub at: i64,
    /// Whether it returned 1.
    pub ok: bool,
    /// The error, for a failed query.
    pub error: String,
}

/// The queries of a loop, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryLog {
    /// Every query, in the order they ran.
    pub results: Vec<QueryResult>,
}

impl QueryLog {
    /// Reads the loop's output; other lines are ignored.
    pub fn parse(text: &str) -> QueryLog {
        let results = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("QUERY ")?;
                let (at, rest) = rest.split_once(' ')?;
                let at = at.parse().ok()?;
                let (outcome, error) = rest.split_once(' ').unwrap_or((rest, ""));
                match outcome {
                    "ok" => Some(QueryResult {
                        at,
                        ok: true,
                        error: String::new(),
                    }),
                    "fail" => Some(QueryResult {
                        at,
                        ok: false,
                        error: error.trim().to_string(),
                    }),
                    _ => None,
                }
            })
            .collect();
        QueryLog { results }
    }

    /// Number of successful queries.
    pub fn ok(&self) -> usize {
        self.results.iter().filter(|r| r.ok).count()
    }

    /// Number of failed queries.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }

    /// Seconds from the first to the last failure of the longest run of failed queries
    /// (0 without failures; a single failure counts as 1 s).
    pub fn longest_outage_secs(&self) -> i64 {
        let mut longest = 0;
        let mut start: Option<i64> = None;
        for r in &self.results {
            if r.ok {
                start = None;
                continue;
            }
            let s = *start.get_or_insert(r.at);
            longest = longest.max(r.at - s + 1);
        }
        longest
    }

    /// The distinct errors of failed queries, with their counts.
    pub fn errors(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for r in self.results.iter().filter(|r| !r.ok) {
            match counts.iter_mut().find(|(e, _)| *e == r.error) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.error.clone(), 1)),
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_output_is_counted() {
        let log = QueryLog::parse(
            "starting\nQUERY 100 ok\nQUERY 101 fail psql: error: connection refused\nQUERY 102 fail psql: error: connection refused\nQUERY 104 fail timeout\nQUERY 105 ok\nQUERY 106 fail timeout\nQUERY 107 ok\ngarbage line\n",
        );
        assert_eq!(log.ok(), 3);
        assert_eq!(log.failed(), 4);
        assert_eq!(log.longest_outage_secs(), 4);
        assert_eq!(
            log.errors(),
            vec![
                ("psql: error: connection refused".to_string(), 2),
                ("timeout".to_string(), 2)
            ]
        );
    }

    #[test]
    fn no_failures_no_outage() {
        let log = QueryLog::parse("QUERY 1 ok\nQUERY 2 ok\n");
        assert_eq!(
            (log.ok(), log.failed(), log.longest_outage_secs()),
            (2, 0, 0)
        );
    }
}
