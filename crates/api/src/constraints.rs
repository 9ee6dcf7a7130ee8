//! Update constraints of a PgpoolVersion: may a Pgpool on one version move to another?
//!
//! Constraint strings are semver ranges as KubeDB writes them, such as `">= 4.5.3, <= 4.6.0"`.
//! An empty allowlist allows every target not in the denylist; the denylist always wins.

use semver::{Version, VersionReq};

use crate::version::UpdateConstraints;

/// Why a version or a constraint could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConstraintError {
    /// A version that is not semver-like.
    #[error("version {0:?} is not a version number such as 4.5.3")]
    BadVersion(String),
    /// A constraint that does not parse.
    #[error("update constraint {0:?} does not parse: use a range such as \">= 4.5.3, <= 4.6.0\"")]
    BadConstraint(String),
}

/// The verdict on a target version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The target is allowed.
    Allowed,
    /// The target matches this denylist entry.
    Denied(String),
    /// The allowlist is not empty and no entry matches.
    NotAllowed(Vec<String>),
}

/// Parse a version leniently: `4.5` and `4` are read as `4.5.0` and `4.0.0`; a leading `v` is
/// ignored; anything after `+` is build metadata.
pub fn parse_version(s: &str) -> Result<Version, ConstraintError> {
    let t = s.trim().trim_start_matches('v');
    if let Ok(v) = Version::parse(t) {
        return Ok(v);
    }
    let (core, rest) = match t.find(['-', '+']) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let mut parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(ConstraintError::BadVersion(s.to_string()));
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    Version::parse(&format!("{}{}", parts.join("."), rest))
        .map_err(|_| ConstraintError::BadVersion(s.to_string()))
}

/// Parse one constraint string.
pub fn parse_constraint(s: &str) -> Result<VersionReq, ConstraintError> {
    VersionReq::parse(s.trim()).map_err(|_| ConstraintError::BadConstraint(s.to_string()))
}

fn matches(req: &VersionReq, v: &Version) -> bool {
    if req.matches(v) {
        return true;
    }
    // semver only lets pre-releases match ranges that name the same core version; catalog
    // entries such as 4.6.0-rc1 are compared by their core version instead.
    !v.pre.is_empty() && req.matches(&Version::new(v.major, v.minor, v.patch))
}

/// Decide whether `target` is allowed by `constraints`.
pub fn evaluate(
    constraints: &UpdateConstraints,
    target: &str,
) -> Result<Decision, ConstraintError> {
    let v = parse_version(target)?;
    for entry in &constraints.denylist {
        if matches(&parse_constraint(entry)?, &v) {
            return Ok(Decision::Denied(entry.clone()));
        }
    }
    if constraints.allowlist.is_empty() {
        return Ok(Decision::Allowed);
    }
    for entry in &constraints.allowlist {
        if matches(&parse_constraint(entry)?, &v) {
            return Ok(Decision::Allowed);
        }
    }
    Ok(Decision::NotAllowed(constraints.allowlist.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default catalog of DESIGN.md §3: (version, allowlist).
    const CATALOG: &[(&str, &str)] = &[
        ("4.4.5", ">= 4.4.5, <= 4.6.0"),
        ("4.4.8", ">= 4.4.8, <= 4.6.0"),
        ("4.5.0", ">= 4.5.0, <= 4.6.0"),
        ("4.5.3", ">= 4.5.3, <= 4.6.0"),
        ("4.6.0", ">= 4.6.0, <= 4.6.0"),
    ];

    fn allow(list: &str) -> UpdateConstraints {
        UpdateConstraints {
            allowlist: vec![list.to_string()],
            denylist: vec![],
        }
    }

    #[test]
    fn default_catalog_allows_only_forward_moves_up_to_4_6_0() {
        for (from, list) in CATALOG {
            let c = allow(list);
            for (to, _) in CATALOG {
                let forward = parse_version(to).unwrap() >= parse_version(from).unwrap();
                let got = evaluate(&c, to).unwrap();
                assert_eq!(got == Decision::Allowed, forward, "{from} -> {to}: {got:?}");
            }
        }
        assert_eq!(
            evaluate(&allow(">= 4.5.3, <= 4.6.0"), "4.6.0").unwrap(),
            Decision::Allowed
        );
        assert!(matches!(
            evaluate(&allow(">= 4.6.0, <= 4.6.0"), "4.5.3").unwrap(),
            Decision::NotAllowed(_)
        ));
        assert!(matches!(
            evaluate(&allow(">= 4.5.3, <= 4.6.0"), "4.7.0").unwrap(),
            Decision::NotAllowed(_)
        ));
    }

    #[test]
    fn denylist_wins_and_empty_allowlist_allows() {
        let c = UpdateConstraints {
            allowlist: vec![],
            denylist: vec!["< 4.5.0".into()],
        };
        assert_eq!(evaluate(&c, "4.6.0").unwrap(), Decision::Allowed);
        assert_eq!(
            evaluate(&c, "4.4.8").unwrap(),
            Decision::Denied("< 4.5.0".into())
        );
        let c = UpdateConstraints {
            allowlist: vec![">= 4.0.0".into()],
            denylist: vec!["4.5.1".into()],
        };
        assert_eq!(
            evaluate(&c, "4.5.1").unwrap(),
            Decision::Denied("4.5.1".into())
        );
    }

    #[test]
    fn lenient_versions_and_errors() {
        assert_eq!(parse_version("4.6").unwrap(), Version::new(4, 6, 0));
        assert_eq!(parse_version("v4").unwrap(), Version::new(4, 0, 0));
        assert!(parse_version("four").is_err());
        assert!(parse_version("4..1").is_err());
        assert_eq!(
            evaluate(&allow("not a range"), "4.6.0"),
            Err(ConstraintError::BadConstraint("not a range".into()))
        );
        assert_eq!(
            evaluate(&allow(">= 4.5.0, <= 4.6.0"), "4.6.0-rc1").unwrap(),
            Decision::Allowed
        );
    }
}
