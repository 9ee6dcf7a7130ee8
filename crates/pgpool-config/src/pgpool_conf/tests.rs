//! Unit tests of the `pgpool.conf` syntax and parser.

use super::parse::*;
use super::syntax::*;
use crate::error::ConfigError;

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
