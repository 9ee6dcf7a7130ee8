//! ControllerRevisions as a real API server treats them: `data` is immutable and compared
//! **byte for byte**.
//!
//! A real kube-apiserver keeps the exact bytes a client sent as `data` (a `RawExtension`). A
//! PUT carries its own bytes, which must equal the stored ones. A patch (merge, JSON,
//! strategic or apply) is applied to the server's own JSON encoding of the object, and Go's
//! encoder writes a `RawExtension` compact, with `&`, `<`, `>`, U+2028 and U+2029 escaped
//! (`\u0026`, ...): if the stored bytes are not already in that form, the patched object's
//! `data` differs from the stored one and the patch is refused with `422 ... data: Invalid
//! value: ...: field is immutable`, whatever it changes (seen on kube-apiserver 1.36: a merge
//! patch of `revision` alone is refused for data `{"a":"x && y"}` or `{"a": 1}`, accepted for
//! `{"a":1,"b":2}`).

use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::registry::ResourceInfo;

/// Whether `info` is apps/v1 ControllerRevisions.
pub(crate) fn is_revisions(info: &ResourceInfo) -> bool {
    info.group == "apps" && info.plural == "controllerrevisions"
}

/// The exact bytes of `data` in a request body, if it has one.
pub(crate) fn raw_data(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Body<'_>>(body)
        .ok()?
        .data
        .map(|raw| raw.get().to_string())
}

/// What Go's `encoding/json` writes for raw JSON bytes: insignificant whitespace removed,
/// `<`, `>`, `&`, U+2028 and U+2029 inside strings escaped; key order and every other escape
/// kept.
pub(crate) fn go_compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                _ => out.push(c),
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The 422 a real server answers for a changed `data`.
pub(crate) fn immutable(info: &ResourceInfo, name: &str, data: &str) -> ApiError {
    ApiError::invalid(
        info,
        name,
        vec![(
            "data".to_string(),
            format!("Invalid value: {data}: field is immutable"),
        )],
    )
}

/// The stored bytes of `data`: as recorded at create, else what serde writes for the value.
pub(crate) fn stored_raw(recorded: Option<&str>, obj: &Value) -> String {
    match recorded {
        Some(raw) => raw.to_string(),
        None => obj
            .get("data")
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .unwrap_or_else(|| "null".to_string()),
    }
}

/// Checks a write of a stored revision: a PUT (`put`) by its bytes, any patch by the server's
/// encoding of the stored bytes.
pub(crate) fn check_write(
    info: &ResourceInfo,
    name: &str,
    stored: &str,
    put: bool,
    body: &[u8],
) -> Result<(), ApiError> {
    if put {
        check_update(info, name, stored, body)
    } else {
        check_patch(info, name, stored)
    }
}

/// Checks a PUT: its `data` bytes must equal the stored ones.
fn check_update(
    info: &ResourceInfo,
    name: &str,
    stored: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let sent = raw_data(body).unwrap_or_else(|| "null".to_string());
    if sent == stored {
        Ok(())
    } else {
        Err(immutable(info, name, &sent))
    }
}

/// Checks a patch of any kind: the server's encoding of the stored `data` must be the stored
/// bytes themselves (a patch that changes `data` is refused by the value check on update).
fn check_patch(info: &ResourceInfo, name: &str, stored: &str) -> Result<(), ApiError> {
    let encoded = go_compact(stored);
    if encoded == stored {
        Ok(())
    } else {
        Err(immutable(info, name, &encoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_encoding_compacts_and_escapes_html_characters_in_strings_only() {
        assert_eq!(go_compact(r#"{"a": 1}"#), r#"{"a":1}"#);
        assert_eq!(
            go_compact(r#"{"a":"x && y"}"#),
            r#"{"a":"x \u0026\u0026 y"}"#
        );
        assert_eq!(go_compact(r#"{"a":"<b>"}"#), r#"{"a":"\u003cb\u003e"}"#);
        assert_eq!(
            go_compact(r#"{"a":"q\"& ","b":2}"#),
            r#"{"a":"q\"\u0026 ","b":2}"#
        );
        assert_eq!(
            go_compact(r#"{"b":1,"a":2}"#),
            r#"{"b":1,"a":2}"#,
            "order kept"
        );
        assert_eq!(go_compact(r#"{"a":1,"b":2}"#), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn raw_data_is_the_exact_bytes_sent() {
        let body = br#"{"metadata":{"name":"r"},"data": {"a": "x && y"},"revision":1}"#;
        assert_eq!(raw_data(body).as_deref(), Some(r#"{"a": "x && y"}"#));
        assert_eq!(raw_data(br#"{"revision":1}"#), None);
    }
}
