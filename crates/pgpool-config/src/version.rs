//! Pgpool-II version numbers as the catalog spells them, and the configuration differences
//! between releases that the rendering depends on.

use std::fmt;

use super::error::ConfigError;

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
}

/// A configuration parameter that a Pgpool-II release renamed.
///
/// pgpool ignores a parameter it does not know **without any log line**, even with `-d` (seen
/// on the real 4.3.5, 4.6.1 and 4.7.3 of Debian): 4.4+ given only `socket_dir` puts the client
/// socket in `/tmp`, 4.3 given only `unix_socket_directories` puts it in its build default
/// (`/var/run/postgresql` in Debian's build), so the readiness probe on the run directory
/// fails; 4.3.5 and 4.6.1 given only `work_dir` (4.6 in a rollback from 4.7) write
/// `pgpool_status` to their build default (`/var/log/postgresql` in Debian's build; the pod's
/// root filesystem is read-only).
/// Either way the pod breaks without a word. So the renderer writes **both** spellings of
/// every renamed parameter with the same value: one file then fits every supported release,
/// and a pod restarted on another version by an UpdateVersion, or rolled back, mounts a
/// configuration its binary reads. The real binaries prove it in `tests/real_pgpool/`. 4.7
/// reads the old name `logdir` too: it logs `WARNING: logdir is changed to work_dir` (with
/// `DETAIL: if logdir is specified, the value will be set to work_dir`) and uses the value;
/// that warning is the only one pgpool logs for the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenamedParameter {
    /// The name releases before [`RenamedParameter::renamed_in`] read.
    pub old: &'static str,
    /// The name from [`RenamedParameter::renamed_in`] on.
    pub new: &'static str,
    /// The first release (major, minor) that reads the new name.
    pub renamed_in: (u32, u32),
}

impl RenamedParameter {
    /// The name that `release` itself reads.
    pub fn name_for(&self, release: &PgpoolRelease) -> &'static str {
        if release.at_least(self.renamed_in.0, self.renamed_in.1) {
            self.new
        } else {
            self.old
        }
    }
}

/// Every parameter that was renamed between [`MIN_SUPPORTED`] and the newest release we know
/// (4.7). The PCP socket directory kept its name (`pcp_socket_dir` is still in 4.4+'s parameter
/// table in `src/config/pool_config_variables.c`).
pub const RENAMED_PARAMETERS: &[RenamedParameter] = &[
    RenamedParameter {
        old: "socket_dir",
        new: "unix_socket_directories",
        renamed_in: (4, 4),
    },
    RenamedParameter {
        old: "logdir",
        new: "work_dir",
        renamed_in: (4, 7),
    },
];

/// The renamed parameter whose old or new name is `name`.
pub fn renamed(name: &str) -> Option<&'static RenamedParameter> {
    RENAMED_PARAMETERS
        .iter()
        .find(|p| p.old == name || p.new == name)
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
        let socket = renamed("socket_dir").expect("socket_dir is renamed");
        assert_eq!(renamed("unix_socket_directories"), Some(socket));
        assert_eq!(socket.name_for(&v("4.3.5")), "socket_dir");
        assert_eq!(socket.name_for(&v("4.4.0")), "unix_socket_directories");
        assert_eq!(socket.name_for(&v("4.6.0")), "unix_socket_directories");
        let work = renamed("work_dir").expect("logdir is renamed");
        assert_eq!(work.name_for(&v("4.6.9")), "logdir");
        assert_eq!(work.name_for(&v("4.7.0")), "work_dir");
        assert_eq!(work.name_for(&v("5.0")), "work_dir");
        assert_eq!(renamed("pcp_socket_dir"), None, "kept its name");
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
