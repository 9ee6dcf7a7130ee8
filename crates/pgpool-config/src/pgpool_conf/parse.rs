//! The parser of user-supplied `pgpool.conf` override files.

use super::syntax::is_valid_key;
use crate::error::ConfigError;

/// Parses the text of a user's `pgpool.conf` (overrides) into `(key, value)` pairs in file
/// order, keys lower-cased, values without their quotes.
///
/// Accepted per line: blank, `# comment`, `key = value` or `key value`, optionally followed by
/// a comment. A value is a single-quoted string (no line breaks) or a bare word without spaces
/// or quotes. Anything else is a [`ConfigError::Parse`] naming the line.
pub fn parse_pgpool_conf(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |message: &str| ConfigError::Parse {
            line: line_no,
            message: message.to_string(),
        };
        let line = raw_line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let key = &line[..key_end];
        if !is_valid_key(key) {
            return Err(err("expected a parameter name at the start of the line"));
        }
        let mut rest = line[key_end..].trim_start_matches([' ', '\t']);
        if let Some(after_eq) = rest.strip_prefix('=') {
            rest = after_eq.trim_start_matches([' ', '\t']);
        }
        let (value, remainder) = if let Some(quoted) = rest.strip_prefix('\'') {
            // pgpool's lexer: a string is ' ( [^'\n] | \\. )* '
            let bytes = quoted.as_bytes();
            let mut i = 0;
            let mut end = None;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if i + 1 < bytes.len() => i += 2,
                    b'\'' => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let end = end.ok_or_else(|| err("unterminated quoted value"))?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let value_end = rest.find([' ', '\t', '#']).unwrap_or(rest.len());
            let value = &rest[..value_end];
            if value.is_empty() {
                return Err(err("missing value"));
            }
            if value.contains('\'') || value.contains('=') {
                return Err(err("unexpected character in unquoted value"));
            }
            (value.to_string(), &rest[value_end..])
        };
        let remainder = remainder.trim_start_matches([' ', '\t']);
        if !(remainder.is_empty() || remainder.starts_with('#')) {
            return Err(err("unexpected text after the value"));
        }
        out.push((key.to_ascii_lowercase(), value));
    }
    Ok(out)
}
