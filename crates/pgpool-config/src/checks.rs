//! Checks of the render input that pgpool itself would not report clearly.

use super::error::ConfigError;
use super::input::{Backend, Paths, RenderInput};
use super::parameters::{FLAG_TOKENS, PRIMARY_FLAG, STANDBY_FLAG};

pub(super) fn check_pool_key(key: &str) -> Result<(), ConfigError> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > 1024 {
        "it is longer than 1024 bytes"
    } else if key.chars().any(|c| c.is_control()) || key.trim() != key {
        "it contains a line break, a control character or leading/trailing blanks, which pgpool would not read back"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidPoolKey {
        reason: reason.into(),
    })
}

pub(super) fn check_paths(paths: &Paths) -> Result<(), ConfigError> {
    for path in [&paths.config_dir, &paths.key_file, &paths.run_dir] {
        let text = path.to_string_lossy();
        let fail = |reason: &str| ConfigError::InvalidPath {
            path: text.to_string(),
            reason: reason.into(),
        };
        if !path.is_absolute() {
            return Err(fail("not absolute"));
        }
        if path.to_str().is_none() {
            return Err(fail("not valid UTF-8"));
        }
        if text.contains(['\'', ',', '"']) || text.chars().any(|c| c.is_control()) {
            return Err(fail("contains a quote, comma or control character"));
        }
    }
    Ok(())
}

/// A user name that can stand before the `:` of a pool_passwd / pcp.conf line.
pub(super) fn check_user_name(what: &str, user: &str) -> Result<(), ConfigError> {
    let reason = if user.is_empty() {
        "the user name is empty"
    } else if user.contains(':') {
        "the user name contains ':', which separates name and secret in the file"
    } else if user.chars().any(|c| c.is_control()) {
        "the user name contains a line break or control character"
    } else if user.contains('\'') {
        "the user name contains a single quote, which pgpool.conf cannot hold"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidCredentials {
        what: what.into(),
        reason: reason.into(),
    })
}

/// Backend user first, then the extra users; identical duplicates dropped.
pub(super) fn collect_users(input: &RenderInput) -> Result<Vec<(&str, &str)>, ConfigError> {
    let mut users: Vec<(&str, &str)> = Vec::new();
    let all = std::iter::once((
        "backend user".to_string(),
        &input.backend_user,
        &input.backend_password,
    ))
    .chain(
        input
            .extra_users
            .iter()
            .map(|(u, p)| (format!("user {u:?}"), u, p)),
    );
    for (what, user, password) in all {
        check_user_name(&what, user)?;
        if password.is_empty() {
            return Err(ConfigError::InvalidCredentials {
                what,
                reason: "the password is empty".into(),
            });
        }
        match users.iter().find(|(u, _)| *u == user.as_str()) {
            Some((_, p)) if *p == password.as_str() => {}
            Some(_) => {
                return Err(ConfigError::DuplicateUser {
                    user: user.to_string(),
                });
            }
            None => users.push((user, password)),
        }
    }
    Ok(users)
}

pub(super) fn check_backend(index: usize, backend: &Backend) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::InvalidBackend { index, reason };
    let host = &backend.host;
    if host.is_empty() {
        return Err(fail("the host name is empty".into()));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | ',' | '\\'))
    {
        return Err(fail(format!(
            "host name {host:?} contains characters a host name cannot have"
        )));
    }
    if backend.port == 0 {
        return Err(fail("port 0".into()));
    }
    let flag = match &backend.flag {
        None if index == 0 => PRIMARY_FLAG.to_string(),
        None => STANDBY_FLAG.to_string(),
        Some(flag) => {
            let tokens: Vec<&str> = flag.split('|').map(str::trim).collect();
            if let Some(bad) = tokens.iter().find(|t| !FLAG_TOKENS.contains(t)) {
                return Err(fail(format!(
                    "flag {flag:?}: {bad:?} is not one of {}",
                    FLAG_TOKENS.join(", ")
                )));
            }
            if tokens.contains(&"ALLOW_TO_FAILOVER") && tokens.contains(&"DISALLOW_TO_FAILOVER") {
                return Err(fail(format!(
                    "flag {flag:?}: ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER contradict each other"
                )));
            }
            tokens.join("|")
        }
    };
    Ok(flag)
}

pub(super) fn check_sizing(field: &str, value: u32) -> Result<i64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::InvalidSetting {
            field: field.into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(i64::from(value))
}
