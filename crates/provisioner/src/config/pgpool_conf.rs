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

use super::ConfigError;

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

fn is_bare_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next();
    !int_part.is_empty()
        && int_part.chars().all(|c| c.is_ascii_digit())
        && frac_part.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

fn is_bool_word(s: &str) -> bool {
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

fn quote(key: &str, value: &str) -> Result<String, ConfigError> {
    check_string(key, value)?;
    Ok(format!("'{value}'"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_typed_values() {
        assert_eq!(Value::Int(9999).render("port").unwrap(), "9999");
        assert_eq!(Value::Bool(true).render("ssl").unwrap(), "on");
        assert_eq!(Value::Bool(false).render("ssl").unwrap(), "off");
        assert_eq!(Value::Str("*".into()).render("x").unwrap(), "'*'");
        assert_eq!(Value::Str(String::new()).render("x").unwrap(), "''");
    }

    #[test]
    fn raw_values_are_bare_only_when_numbers_or_booleans() {
        for bare in ["32", "-1", "+7", "0.5", "on", "OFF", "true", "no"] {
            assert_eq!(Value::Raw(bare.into()).render("k").unwrap(), bare);
        }
        for quoted in ["1.", ".5", "1e3", "abc", "10s", "1 2", "", "0x10"] {
            assert_eq!(
                Value::Raw(quoted.into()).render("k").unwrap(),
                format!("'{quoted}'")
            );
        }
    }

    #[test]
    fn refuses_values_that_could_escape_their_quotes() {
        for bad in [
            "a'b",
            "x\nbackend_hostname9 = 'evil'",
            "x\r",
            "tab\there",
            "ends\\",
        ] {
            let err = Value::Str(bad.into())
                .render("log_line_prefix")
                .unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key, .. } if key == "log_line_prefix"),
                "{bad:?}: {err}"
            );
            assert!(Value::Raw(bad.into()).render("k").is_err(), "{bad:?}");
        }
        // a backslash that is not last is harmless: pgpool keeps it literally
        assert_eq!(Value::Str("a\\b".into()).render("k").unwrap(), "'a\\b'");
    }

    #[test]
    fn keys() {
        assert!(is_valid_key("num_init_children"));
        assert!(is_valid_key("backend_hostname0"));
        assert!(is_valid_key("_x"));
        assert!(!is_valid_key("0abc"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a-b"));
    }

    #[test]
    fn parses_override_files() {
        let text = "\
# comment line
num_init_children = 64
max_pool=3   # trailing comment
  log_line_prefix = '%t: pid %p: '  
load_balance_mode off
Log_Connections = on
white_function_list = ''
path = 'C:\\dir\\'x' # backslash pairs are kept as they are
\r
";
        let parsed = parse_pgpool_conf(text).unwrap();
        let expect = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            parsed,
            vec![
                expect("num_init_children", "64"),
                expect("max_pool", "3"),
                expect("log_line_prefix", "%t: pid %p: "),
                expect("load_balance_mode", "off"),
                expect("log_connections", "on"),
                expect("white_function_list", ""),
                expect("path", "C:\\dir\\'x"),
            ]
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases = [
            ("ok = 1\n= 5\n", 2),
            ("a = 'open\n", 1),
            ("x = 1\ny = 2\nz =\n", 3),
            ("a = 'b' c\n", 1),
            ("a = b c\n", 1),
            ("a = b'c\n", 1),
            ("-a = 1\n", 1),
        ];
        for (text, line) in cases {
            match parse_pgpool_conf(text) {
                Err(ConfigError::Parse { line: got, .. }) => assert_eq!(got, line, "{text:?}"),
                other => panic!("{text:?}: expected a parse error, got {other:?}"),
            }
        }
    }
}
