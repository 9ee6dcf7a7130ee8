//! Whether private key material shows in the operators' output: the text `PRIVATE KEY` (any
//! PEM header), the base64 of a Secret's `tls.key` as the API server stores it, or any line of
//! the key's PEM body (the DER of the key). Findings name the file and what kind of material it
//! holds, never the material itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A PEM body line shorter than this is not searched for (too likely to match by chance).
const MIN_BODY_LINE: usize = 16;

/// One private key to look for: where it comes from (for example `Secret pp-tls-ca tls.key`)
/// and its PEM text.
pub struct KeyMaterial {
    /// Where the key comes from; used in findings.
    pub source: String,
    /// The key's PEM text (never printed).
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What each key is searched as: its base64 (the Secret's `data` value) and its PEM body lines.
fn needles(key: &KeyMaterial) -> Vec<(String, &'static str)> {
    let mut out = vec![(STANDARD.encode(&key.pem), "its base64")];
    let text = String::from_utf8_lossy(&key.pem);
    out.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----") && l.len() >= MIN_BODY_LINE)
            .map(|l| (l.to_string(), "a line of its PEM body")),
    );
    out
}

/// The findings in `text` (the contents of file `file`): one line each, without the material.
pub fn find_leaks(file: &str, text: &str, keys: &[KeyMaterial]) -> Vec<String> {
    let mut found = Vec::new();
    if text.contains("PRIVATE KEY") {
        found.push(format!("{file}: contains \"PRIVATE KEY\""));
    }
    for key in keys {
        if let Some((_, what)) = needles(key)
            .into_iter()
            .find(|(needle, _)| text.contains(needle.as_str()))
        {
            found.push(format!("{file}: contains {what} of {}", key.source));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up key-shaped PEM (not a key): what matters is its lines and base64.
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZmFrZS1rZXkt\nZm9yLXRlc3RzLW9ubHk=\n-----END PRIVATE KEY-----\n";

    fn key() -> Vec<KeyMaterial> {
        vec![KeyMaterial {
            source: "Secret pp-tls-server-cert tls.key".into(),
            pem: PEM.as_bytes().to_vec(),
        }]
    }

    #[test]
    fn a_clean_log_has_no_findings() {
        let log = "INFO reconcile pp-tls: certificate pp-tls-server-cert issued\n";
        assert!(find_leaks("provisioner.log", log, &key()).is_empty());
    }

    #[test]
    fn the_pem_header_the_base64_and_a_body_line_are_found() {
        let header = find_leaks("a.log", "key: -----BEGIN EC PRIVATE KEY-----", &[]);
        assert_eq!(header, vec!["a.log: contains \"PRIVATE KEY\"".to_string()]);

        let b64 = STANDARD.encode(PEM);
        let found = find_leaks("b.log", &format!("data: {{\"tls.key\":\"{b64}\"}}"), &key());
        assert_eq!(
            found,
            vec!["b.log: contains its base64 of Secret pp-tls-server-cert tls.key".to_string()]
        );

        let line = "debug: MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZmFrZS1rZXkt";
        let found = find_leaks("c.log", line, &key());
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("a line of its PEM body"), "{found:?}");
        // the finding never quotes the material
        assert!(!found[0].contains("MIGHAgEA"), "{found:?}");
    }
}
