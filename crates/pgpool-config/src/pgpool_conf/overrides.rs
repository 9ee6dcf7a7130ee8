//! The checks of a user's `pgpool.conf` overrides, shared by the renderer (the provisioner)
//! and the ops-manager (a Reconfigure request is checked before anything changes), so that
//! both refuse the same overrides with the same message.

use super::syntax::{Value, is_valid_key};
use crate::error::ConfigError;
use crate::parameters::MANAGED_PARAMETERS;

/// Check one override as the renderer does: a valid key that the operator does not manage,
/// with a value that can be written. Returns the key in the form the file uses (trimmed,
/// lower-case).
pub fn check_override(raw_key: &str, value: &str) -> Result<String, ConfigError> {
    let key = raw_key.trim().to_ascii_lowercase();
    if !is_valid_key(&key) {
        return Err(ConfigError::InvalidKey {
            key: raw_key.to_string(),
        });
    }
    if MANAGED_PARAMETERS.contains(&key.as_str()) {
        return Err(ConfigError::ManagedParameter { key });
    }
    Value::Raw(value.to_string()).render(&key)?;
    Ok(key)
}

/// Check every override, in order; the first refused one is the error.
pub fn check_overrides(overrides: &[(String, String)]) -> Result<(), ConfigError> {
    for (key, value) in overrides {
        check_override(key, value)?;
    }
    Ok(())
}

/// The message of a configuration the renderer refuses (the provisioner's `Problem` message
/// and the ops-manager's validation failure both start with it).
pub fn render_problem(e: &ConfigError) -> String {
    format!("the Pgpool-II configuration cannot be rendered: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_and_invalid_keys_are_refused_like_the_renderer_refuses_them() {
        assert_eq!(check_override(" Max_Pool ", "7").unwrap(), "max_pool");
        let managed = check_override("port", "5432").unwrap_err();
        assert!(matches!(managed, ConfigError::ManagedParameter { .. }));
        assert!(check_override("bad key", "1").is_err());
        let overrides = vec![
            ("max_pool".to_string(), "7".to_string()),
            ("backend_hostname0".to_string(), "'x'".to_string()),
        ];
        let e = check_overrides(&overrides).unwrap_err();
        assert!(render_problem(&e).starts_with("the Pgpool-II configuration cannot be rendered: "));
    }
}
