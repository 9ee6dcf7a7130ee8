//! Setting a pod up on the node: its Secrets and ConfigMaps, network, volumes, /etc/hosts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

use super::Worker;
use crate::netns;
use crate::pods::spec;
use crate::volumes::{self, Sources};

impl Worker {
    pub(super) async fn fetch_sources(&mut self) -> anyhow::Result<()> {
        let (secrets, cms) = volumes::referenced_sources(&self.pod);
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let secret_api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
        let cm_api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut sources = Sources::default();
        for s in secrets {
            if let Some(secret) = secret_api.get_opt(&s).await? {
                sources.add_secret(&secret);
            }
        }
        for c in cms {
            if let Some(cm) = cm_api.get_opt(&c).await? {
                sources.add_config_map(&cm);
            }
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut plans = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            plans.insert(
                v.name.clone(),
                volumes::plan_volume(&self.pod, v, &sources, None)?,
            );
        }
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            spec::env(&self.pod, c, &sources, None)?;
        }
        self.sources = sources;
        self.plans = plans;
        Ok(())
    }

    pub(super) async fn setup(&mut self) -> anyhow::Result<()> {
        let ip = self
            .ctx
            .ips
            .lock()
            .expect("ip pool")
            .allocate()
            .ok_or_else(|| anyhow::anyhow!("no free pod IP"))?;
        self.ip = Some(ip);
        self.view.pod_ip = Some(ip.to_string());
        netns::add_pod(&self.ctx.config.net, &self.uid, ip).await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(self.dir.join("logs"))?;
        let ip_text = ip.to_string();
        for (name, plan) in &self.plans {
            // downward-API files may ask for the pod's IP: plan again now that it is known
            let volume = self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .find(|v| &v.name == name);
            let plan = match volume {
                Some(v) => volumes::plan_volume(&self.pod, v, &self.sources, Some(&ip_text))?,
                None => plan.clone(),
            };
            volumes::write_volume(&self.dir.join("volumes").join(name), &plan)?;
        }
        self.write_hosts();
        Ok(())
    }

    pub(super) fn write_hosts(&self) {
        let Some(ip) = self.ip else { return };
        let text = spec::hosts(&self.pod, &ip.to_string(), &self.ctx.services.borrow());
        // in place: the containers see this file through a bind mount of its inode
        let _ = std::fs::write(self.dir.join("hosts"), text);
    }
}
