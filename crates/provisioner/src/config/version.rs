//! Pgpool-II version numbers as the catalog spells them, and the configuration differences
//! between releases that the rendering depends on.

use std::fmt;

use super::ConfigError;

/// The oldest Pgpool-II release whose configuration we can render (`backend_clustering_mode`,
/// `ALWAYS_PRIMARY`, `-k` key file and AES entries in `pool_passwd` are all present from 4.3).
pub const MIN_SUPPORTED: PgpoolRelease = PgpoolRelease {
    major: 4,
    minor: 3,
    patch: 0,
};

/// A Pgpool-II release number, parsed leniently from a catalog version such as `4.5.3`, `4.3`
/// or `v4.4.5-debian`: the first two or three dot-separated numbers count, anything after them
/// (a pre-release or build suffix) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgpoolRelease {
    /// Major number (4 for 4.5.3).
    pub major: u32,
    /// Minor number (5 for 4.5.3).
    pub minor: u32,
    /// Patch number (3 for 4.5.3; 0 when the catalog gives only `major.minor`).
    pub patch: u32,
}

impl PgpoolRelease {
    /// Parses a catalog version string; see the type's documentation for what is accepted.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidVersion {
            version: text.to_string(),
        };
        let trimmed = text.trim();
        let trimmed = trimmed
            .strip_prefix('v')
            .or_else(|| trimmed.strip_prefix('V'))
            .unwrap_or(trimmed);
        // Cut at the first character that can only start a suffix ("-rc1", "+build", " ").
        let core_end = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let core = trimmed[..core_end].trim_end_matches('.');
        let mut numbers = core.split('.');
        let mut next = |required: bool| -> Result<Option<u32>, ConfigError> {
            match numbers.next() {
                Some(part) if !part.is_empty() => {
                    part.parse::<u32>().map(Some).map_err(|_| invalid())
                }
                Some(_) => Err(invalid()),
                None if required => Err(invalid()),
                None => Ok(None),
            }
        };
        let major = next(true)?.ok_or_else(invalid)?;
        let minor = next(true)?.ok_or_else(invalid)?;
        let patch = next(false)?.unwrap_or(0);
        Ok(Self {
            major,
            minor,
            patch,
        })
    }

    /// Whether this release is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Fails with [`ConfigError::UnsupportedVersion`] for releases older than [`MIN_SUPPORTED`].
    pub fn ensure_supported(&self) -> Result<(), ConfigError> {
        if *self < MIN_SUPPORTED {
            return Err(ConfigError::UnsupportedVersion {
                version: self.to_string(),
                minimum: MIN_SUPPORTED.to_string(),
            });
        }
        Ok(())
    }

    /// Name of the parameter for the directory of the client Unix socket: 4.4 renamed
    /// `socket_dir` to `unix_socket_directories` (and ignores the old name with only an INFO
    /// line, which would silently put the socket in /tmp).
    pub fn socket_dir_param(&self) -> &'static str {
        if self.at_least(4, 4) {
            "unix_socket_directories"
        } else {
            "socket_dir"
        }
    }

    /// Name of the parameter for the directory of the PCP Unix socket. Unlike the client
    /// socket it kept its name in 4.4 (checked in the 4.4+ parameter table of pgpool's
    /// `src/config/pool_config_variables.c`, which still lists `pcp_socket_dir`).
    pub fn pcp_socket_dir_param(&self) -> &'static str {
        "pcp_socket_dir"
    }

    /// Name of the parameter for the directory holding `pgpool_status`: 4.7 renamed `logdir`
    /// to `work_dir`.
    pub fn work_dir_param(&self) -> &'static str {
        if self.at_least(4, 7) {
            "work_dir"
        } else {
            "logdir"
        }
    }
}

impl fmt::Display for PgpoolRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> PgpoolRelease {
        PgpoolRelease::parse(text).expect("version parses")
    }

    #[test]
    fn parses_catalog_spellings() {
        assert_eq!(
            v("4.5.3"),
            PgpoolRelease {
                major: 4,
                minor: 5,
                patch: 3
            }
        );
        assert_eq!(v("4.3"), v("4.3.0"));
        assert_eq!(v(" v4.4.5 "), v("4.4.5"));
        assert_eq!(v("4.6.0-rc1"), v("4.6.0"));
        assert_eq!(v("4.7.1+build.2"), v("4.7.1"));
        assert_eq!(v("4.4.8.1"), v("4.4.8"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "4", "four.five", "4..5", ".4.5", "latest", "v"] {
            assert!(
                matches!(
                    PgpoolRelease::parse(bad),
                    Err(ConfigError::InvalidVersion { .. })
                ),
                "{bad:?} must not parse"
            );
        }
    }

    #[test]
    fn orders_numerically() {
        assert!(v("4.10.0") > v("4.9.9"));
        assert!(v("4.4.10") > v("4.4.9"));
    }

    #[test]
    fn parameter_names_follow_the_renames() {
        assert_eq!(v("4.3.5").socket_dir_param(), "socket_dir");
        assert_eq!(v("4.4.0").socket_dir_param(), "unix_socket_directories");
        assert_eq!(v("4.6.0").socket_dir_param(), "unix_socket_directories");
        assert_eq!(v("4.3").pcp_socket_dir_param(), "pcp_socket_dir");
        assert_eq!(v("4.6.0").pcp_socket_dir_param(), "pcp_socket_dir");
        assert_eq!(v("4.6.9").work_dir_param(), "logdir");
        assert_eq!(v("4.7.0").work_dir_param(), "work_dir");
        assert_eq!(v("5.0").work_dir_param(), "work_dir");
    }

    #[test]
    fn old_releases_are_refused() {
        assert!(v("4.3.0").ensure_supported().is_ok());
        assert!(matches!(
            v("4.2.15").ensure_supported(),
            Err(ConfigError::UnsupportedVersion { .. })
        ));
    }
}
