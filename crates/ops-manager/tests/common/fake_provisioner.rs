//! A small stand-in for the provisioner and its PetSet controller, for the scenarios: it keeps a
//! PetSet per Pgpool (images from the catalog), acknowledges `Paused` (Unknown -> True) and
//! then writes nothing but status, reports Ready from the pods, and creates missing pods from
//! the PetSet's current template. It reacts to watch events of Pgpools, PetSets and Pods.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use pgpool_api::conditions::{self, NewCondition, pgpool as pc};
use pgpool_api::petset::{PetSetUpdateStrategy, UpdateStrategyType};
use pgpool_api::{PetSet, PetSetSpec, Pgpool, PgpoolVersion, names};

/// Run until aborted.
pub async fn run(client: Client) {
    let pp = watcher(
        Api::<Pgpool>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|_| ())
    .boxed();
    let ps = watcher(
        Api::<PetSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|_| ())
    .boxed();
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .map(|_| ())
        .boxed();
    let mut events = futures::stream::select_all([pp, ps, pods]);
    loop {
        // Safety net for a lost write: look again after a second without events.
        let _ = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
        while let Some(Some(())) = events.next().now_or_never() {}
        if let Err(e) = reconcile_all(&client).await {
            tracing::debug!("fake provisioner: {e}");
        }
    }
}

async fn reconcile_all(client: &Client) -> kube::Result<()> {
    let pgpools = Api::<Pgpool>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for pp in pgpools.items {
        pgpool(client, pp).await?;
    }
    let petsets = Api::<PetSet>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for ps in petsets.items {
        petset(client, &ps).await?;
    }
    Ok(())
}

fn set(
    conds: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    t: &str,
    ok: bool,
) {
    conditions::set(
        conds,
        NewCondition {
            type_: t,
            status: if ok {
                conditions::TRUE
            } else {
                conditions::FALSE
            },
            reason: t,
            message: String::new(),
            observed_generation: None,
        },
        Utc::now(),
    );
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn pgpool(client: &Client, mut pp: Pgpool) -> kube::Result<()> {
    let ns = pp.namespace().unwrap_or_default();
    let name = pp.name_any();
    let pgpools: Api<Pgpool> = Api::namespaced(client.clone(), &ns);
    let petsets: Api<PetSet> = Api::namespaced(client.clone(), &ns);
    let status = pp.status.clone().unwrap_or_default();
    let paused = conditions::get(&status.conditions, pc::PAUSED).map(|c| c.status.clone());
    if paused.as_deref() == Some(conditions::UNKNOWN) {
        let st = pp.status.get_or_insert_with(Default::default);
        if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == pc::PAUSED) {
            c.status = conditions::TRUE.into();
            c.reason = "PauseAcknowledged".into();
        }
        pgpools
            .replace_status(&name, &PostParams::default(), &pp)
            .await?;
        return Ok(());
    }
    let paused = paused.as_deref() == Some(conditions::TRUE);
    let halted = pp.spec.is_halted();
    if !paused && !halted {
        let versions: Api<PgpoolVersion> = Api::all(client.clone());
        if let Some(v) = versions.get_opt(&pp.spec.version).await? {
            let want = desired_petset(&pp, &v);
            match petsets.get_opt(&name).await? {
                None => {
                    petsets.create(&PostParams::default(), &want).await?;
                }
                Some(mut have) => {
                    if have.spec.template.spec != want.spec.template.spec
                        || have.spec.replicas != want.spec.replicas
                    {
                        have.spec.template = want.spec.template;
                        have.spec.replicas = want.spec.replicas;
                        petsets
                            .replace(&name, &PostParams::default(), &have)
                            .await?;
                    }
                }
            }
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels(&names::selector_string(&name));
    let ready_pods = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| ready(p))
        .count() as i32;
    let replicas = pp.spec.replicas();
    let mut st = status.clone();
    set(&mut st.conditions, pc::PROVISIONING_STARTED, true);
    set(
        &mut st.conditions,
        pc::REPLICA_READY,
        ready_pods >= replicas,
    );
    set(
        &mut st.conditions,
        pc::ACCEPTING_CONNECTION,
        ready_pods >= 1,
    );
    set(&mut st.conditions, pc::READY, ready_pods >= replicas);
    let provisioned =
        conditions::is_true(&status.conditions, pc::PROVISIONED) || ready_pods >= replicas;
    set(&mut st.conditions, pc::PROVISIONED, provisioned);
    st.phase = Some(conditions::pgpool_phase(&st.conditions, halted));
    if st != status {
        pp.status = Some(st);
        match pgpools
            .replace_status(&name, &PostParams::default(), &pp)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn desired_petset(pp: &Pgpool, v: &PgpoolVersion) -> PetSet {
    let name = pp.name_any();
    let mut containers = vec![Container {
        name: names::CONTAINER_PGPOOL.into(),
        image: Some(v.spec.pgpool.image.clone()),
        ..Container::default()
    }];
    if pp.spec.monitoring_enabled()
        && let Some(e) = &v.spec.exporter
    {
        containers.push(Container {
            name: names::CONTAINER_EXPORTER.into(),
            image: Some(e.image.clone()),
            ..Container::default()
        });
    }
    let mut ps = PetSet::new(
        &name,
        PetSetSpec {
            replicas: Some(pp.spec.replicas()),
            selector: LabelSelector {
                match_labels: Some(names::selector(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::labels(&name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![Container {
                        name: names::CONTAINER_INIT.into(),
                        image: Some(v.spec.pgpool.image.clone()),
                        ..Container::default()
                    }]),
                    containers,
                    ..PodSpec::default()
                }),
            },
            service_name: Some(names::pods_service(&name)),
            update_strategy: Some(PetSetUpdateStrategy {
                type_: Some(UpdateStrategyType::OnDelete),
                rolling_update: None,
            }),
            ..PetSetSpec::default()
        },
    );
    ps.metadata.namespace = pp.namespace();
    ps.metadata.labels = Some(names::labels(&name));
    ps.metadata.owner_references = pp.controller_owner_ref(&()).map(|o| vec![o]);
    ps
}

/// The PetSet controller part: create missing pods from the current template.
async fn petset(client: &Client, ps: &PetSet) -> kube::Result<()> {
    let ns = ps.namespace().unwrap_or_default();
    let name = ps.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = ps
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let have: BTreeMap<String, Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    for i in 0..ps.spec.replicas() {
        let pod_name = names::pod(&name, i);
        if have.contains_key(&pod_name) {
            continue;
        }
        let meta = ps.spec.template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(names::LABEL_POD_NAME.into(), pod_name.clone());
        labels.insert(names::LABEL_POD_INDEX.into(), i.to_string());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                owner_references: ps.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: ps.spec.template.spec.clone(),
            status: None,
        };
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
