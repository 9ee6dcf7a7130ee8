//! Checks of the day-2 scenario's Reconfigure and RotateAuth steps against a running cluster,
//! once the request ended `Successful`: what the request must have changed, seen through the
//! Pgpool Service as a client sees it.
//!
//! - [`check_reconfigured`]: the config Secret holds the override and every new session of
//!   the Service reports it (`SHOW pool_status`), e.g. `max_pool = 7` of KubeDB's example.
//! - [`check_rotated_auth`]: pcp through the Service takes the auth Secret's password and
//!   refuses the one it replaced (`password.prev`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use pgpool_api::names;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Sessions opened through the Service for [`check_reconfigured`]: with two or more pods
/// behind it, several sessions reach several pods.
const SESSIONS: usize = 6;

/// A value of a Secret as text.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The last value `pgpool.conf` text gives `parameter` (later lines win), unquoted.
pub fn conf_value(text: &str, parameter: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let (k, v) = l.split_once('=')?;
            (k.trim() == parameter).then(|| v.trim().trim_matches('\'').to_string())
        })
        .next_back()
}

/// The value of `item` in the rows of `SHOW pool_status` (columns item, value, description).
pub fn pool_status_value(rows: &[Vec<String>], item: &str) -> Option<String> {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(item))
        .and_then(|r| r.get(1).cloned())
}

/// A `.pcppass` line for `user` and `password` (`:` and `\` escaped).
pub fn pcppass_line(user: &str, password: &str) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:{}:{}\n", escape(user), escape(password))
}

async fn show_pool_status(
    addr: (&str, u16),
    user: &str,
    password: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.0)
        .port(addr.1)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await.context("connecting")?;
    let conn = tokio::spawn(connection);
    let messages = client.simple_query("SHOW pool_status").await?;
    drop(client);
    let _ = conn.await;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// After a Successful Reconfigure of Pgpool `pgpool` to `parameter = want`: the rendered
/// `pgpool.conf` says so, and [`SESSIONS`] sessions through the Service at `addr` (with the
/// backend's `user` and `password`) all report it.
pub async fn check_reconfigured(
    client: &kube::Client,
    ns: &str,
    pgpool: &str,
    addr: (&str, u16),
    (user, password): (&str, &str),
    (parameter, want): (&str, &str),
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = names::config_secret(pgpool);
    let secret = secrets
        .get(&name)
        .await
        .with_context(|| format!("Secret {name}"))?;
    let conf = secret_text(&secret, "pgpool.conf").context("no pgpool.conf")?;
    let rendered = conf_value(&conf, parameter);
    ensure!(
        rendered.as_deref() == Some(want),
        "{name}: {parameter} is {rendered:?}, not {want}"
    );
    for i in 0..SESSIONS {
        let rows = show_pool_status(addr, user, password)
            .await
            .with_context(|| format!("session {i} through {}:{}", addr.0, addr.1))?;
        let seen = pool_status_value(&rows, parameter);
        ensure!(
            seen.as_deref() == Some(want),
            "session {i}: SHOW pool_status says {parameter} = {seen:?}, not {want}"
        );
    }
    Ok(())
}

/// After a Successful RotateAuth of Pgpool `pgpool` without `secretRef`: `pcp_node_count`
/// (the program at `pcp_node_count`) through `pcp_addr` works with the auth Secret's
/// password and is refused with `password.prev`.
pub async fn check_rotated_auth(
    client: &kube::Client,
    ns: &str,
    pgpool: &str,
    pcp_addr: (&str, u16),
    pcp_node_count: &Path,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = names::auth_secret(pgpool);
    let secret = secrets
        .get(&name)
        .await
        .with_context(|| format!("Secret {name}"))?;
    let user = secret_text(&secret, "username").unwrap_or_else(|| names::PCP_USER.into());
    let new = secret_text(&secret, "password").context("no password")?;
    let old = secret_text(&secret, "password.prev").context("no password.prev")?;
    ensure!(new != old, "{name}: the password did not change");
    let dir = std::env::temp_dir().join(format!("e2e-pcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pcp = |password: &str| -> anyhow::Result<bool> {
        let pass = dir.join("pcppass");
        std::fs::write(&pass, pcppass_line(&user, password))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600))?;
        }
        let out = Command::new(pcp_node_count)
            .args([
                "-h",
                pcp_addr.0,
                "-p",
                &pcp_addr.1.to_string(),
                "-U",
                &user,
                "-w",
            ])
            .env("PCPPASSFILE", &pass)
            .output()
            .with_context(|| format!("running {}", pcp_node_count.display()))?;
        Ok(out.status.success())
    };
    let (new_ok, old_ok) = (pcp(&new)?, pcp(&old)?);
    let _ = std::fs::remove_dir_all(&dir);
    if !new_ok {
        bail!("pcp refused the new password of {name}");
    }
    if old_ok {
        bail!("pcp still takes the previous password of {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_checks_compare() {
        let conf = "max_pool = 2\n# max_pool = 9\nnum_init_children = 32\nmax_pool = '7' # user";
        assert_eq!(conf_value(conf, "max_pool").as_deref(), Some("7"));
        assert_eq!(conf_value(conf, "port"), None);
        let rows = vec![
            vec!["num_init_children".into(), "32".into(), "".into()],
            vec!["max_pool".into(), "7".into(), "".into()],
        ];
        assert_eq!(pool_status_value(&rows, "max_pool").as_deref(), Some("7"));
        assert_eq!(pcppass_line("pcp", "a:b\\c"), "*:*:pcp:a\\:b\\\\c\n");
    }
}
