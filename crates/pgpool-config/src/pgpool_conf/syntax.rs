//! The `pgpool.conf` syntax: values, quoting, and a parser for user-supplied override files.
//!
//! Pgpool-II's configuration lexer (`src/config/pool_config.l`) reads `key = value` lines,
//! `#` starts a comment, a string is `'...'` on one line. Two facts checked against the real
//! pgpool 4.3 binary shape the quoting here:
//! - a backslash inside quotes is kept literally (`'a\'b'` yields `a\'b`, not `a'b`), and
//! - a doubled quote (`'a''b'`) is a syntax error that stops pgpool.
//!
//! So there is no way to put a single quote inside a value, and this module refuses such
//! values (and every control character, so no value can start a new line) instead of
//! escaping them into something pgpool would read differently.

use crate::error::ConfigError;

/// One parameter value in `pgpool.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string, written in single quotes.
    Str(String),
    /// An integer, written bare.
    Int(i64),
    /// A boolean, written bare as `on` / `off`.
    Bool(bool),
    /// A value from a user's override file, written bare when it is a number or a boolean
    /// word and quoted otherwise.
    Raw(String),
}

impl Value {
    /// Renders the value for the right-hand side of `key = value`, or fails when the value
    /// cannot be represented safely (see the module documentation).
    pub fn render(&self, key: &str) -> Result<String, ConfigError> {
        match self {
            Value::Str(s) => quote(key, s),
            Value::Int(i) => Ok(i.to_string()),
            Value::Bool(b) => Ok(if *b { "on" } else { "off" }.to_string()),
            Value::Raw(s) => {
                if is_bare_number(s) || is_bool_word(s) {
                    Ok(s.clone())
                } else {
                    quote(key, s)
                }
            }
        }
    }
}

/// Whether `key` is a valid parameter name (ASCII letter or `_`, then letters, digits, `_`).
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn is_bare_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next();
    !int_part.is_empty()
        && int_part.chars().all(|c| c.is_ascii_digit())
        && frac_part.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn is_bool_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "on" | "off" | "true" | "false" | "yes" | "no"
    )
}

/// Checks that `value` can sit between single quotes in `pgpool.conf` and means the same to
/// pgpool as to us.
pub fn check_string(key: &str, value: &str) -> Result<(), ConfigError> {
    let reason = if value.contains('\'') {
        Some("it contains a single quote, which pgpool.conf cannot represent inside a value")
    } else if value.chars().any(char::is_control) {
        Some("it contains a line break or another control character")
    } else if value.ends_with('\\') {
        Some("it ends with a backslash, which would escape the closing quote")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidValue {
            key: key.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

pub(super) fn quote(key: &str, value: &str) -> Result<String, ConfigError> {
    check_string(key, value)?;
    Ok(format!("'{value}'"))
}
