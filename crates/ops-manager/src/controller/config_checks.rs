//! The checks of Reconfigure and RotateAuth requests against the cluster (the Secrets they
//! name), on top of [`crate::plan::validate`].

use pgpool_api::{OpsRequestType, Pgpool};

use super::error::Result;
use super::run::Run;
use crate::plan::{self, ConfigPlan, ConfigSources, Verdict};

impl Run<'_> {
    /// The Reconfigure plan for `pp`, from the Secrets as they are now.
    pub(super) async fn plan_reconfigure(
        &self,
        pp: &Pgpool,
    ) -> Result<std::result::Result<ConfigPlan, (&'static str, String)>> {
        let current = match pp.spec.user_config_secret_name() {
            Some(name) => self.fetch_secret(&name).await?,
            None => None,
        };
        let new_name = self
            .req
            .spec
            .configuration
            .as_ref()
            .and_then(|c| c.config_secret.as_ref())
            .map(|r| r.name.clone());
        let new = match new_name {
            Some(name) => self.fetch_secret(&name).await?,
            None => None,
        };
        let key = pgpool_config::KEY_PGPOOL_CONF;
        let current_text = current.as_ref().map(|s| plan::secret_string(s, key));
        let new_text = new.as_ref().map(|s| plan::secret_string(s, key));
        let src = ConfigSources {
            current_secret: current_text.as_ref().map(|t| t.as_deref()),
            new_secret: new_text.as_ref().map(|t| t.as_deref()),
        };
        Ok(plan::plan_reconfigure(&self.req, pp, &src))
    }

    /// The type-specific checks of a request that passed the common ones.
    pub(super) async fn config_verdict(
        &self,
        pp: Option<&Pgpool>,
        verdict: Verdict,
    ) -> Result<Verdict> {
        let (Verdict::Proceed { .. }, Some(pp)) = (&verdict, pp) else {
            return Ok(verdict);
        };
        let refusal = match self.t {
            OpsRequestType::Reconfigure => self.plan_reconfigure(pp).await?.err(),
            OpsRequestType::RotateAuth => {
                let name = self
                    .req
                    .spec
                    .authentication
                    .as_ref()
                    .and_then(|a| a.secret_ref.as_ref())
                    .map(|r| r.name.clone());
                let secret = match name {
                    Some(name) => self.fetch_secret(&name).await?,
                    None => None,
                };
                plan::check_rotate_auth(&self.req, pp, secret.as_ref()).err()
            }
            _ => None,
        };
        Ok(match refusal {
            Some((reason, message)) => Verdict::Fail { reason, message },
            None => verdict,
        })
    }
}
