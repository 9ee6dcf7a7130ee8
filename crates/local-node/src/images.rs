//! The image map: which local runtime stands for a container image.
//!
//! ```yaml
//! images:
//!   ghcr.io/appscode-images/pgpool2:4.6.0:
//!     mounts:                       # path in the container: path on the host
//!       /opt/pgpool-II: .cache/pgpool/4.6
//!   example.com/crash:1:
//!     command: ["/bin/false"]       # replaces the container's command and args
//!   example.com/busybox:*:          # a trailing `*` matches any rest of the image
//!     mounts: {}
//! ```
//!
//! Relative host paths are taken from the map file's folder. The container's root file system
//! is the host's (seen through a private overlay), so an image needs to name only what the
//! host lacks at the paths the pod uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What one image runs as on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRuntime {
    /// Host paths bind-mounted into the container: container path -> host path.
    #[serde(default)]
    pub mounts: BTreeMap<String, PathBuf>,
    /// When set, the container runs this instead of its own command and args (test images).
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// The parsed image map file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMap {
    /// Image reference (or prefix ending in `*`) -> runtime.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRuntime>,
}

impl ImageMap {
    /// Parses a map; relative host paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut map: ImageMap = serde_yaml::from_str(text)?;
        for runtime in map.images.values_mut() {
            for host in runtime.mounts.values_mut() {
                if host.is_relative() {
                    *host = base.join(&*host);
                }
            }
        }
        Ok(map)
    }

    /// Reads and parses a map file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading image map {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        Self::parse(&text, &base)
    }

    /// The runtime of `image`: an exact entry first, then the longest matching `*` prefix.
    pub fn resolve(&self, image: &str) -> Option<&ImageRuntime> {
        if let Some(r) = self.images.get(image) {
            return Some(r);
        }
        self.images
            .iter()
            .filter_map(|(k, r)| {
                let prefix = k.strip_suffix('*')?;
                image.starts_with(prefix).then_some((prefix.len(), r))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"
images:
  ghcr.io/appscode-images/pgpool2:4.6.0:
    mounts:
      /opt/pgpool-II: cache/4.6
      /usr/bin/pg_isready: /usr/lib/postgresql/15/bin/pg_isready
  example.com/crash:1:
    command: ["/bin/false"]
  example.com/any:*:
    mounts: {}
  example.com/any:special*:
    command: ["true"]
"#;

    #[test]
    fn resolves_exact_then_longest_prefix_and_resolves_relative_paths() {
        let map = ImageMap::parse(MAP, Path::new("/repo")).unwrap();
        let pg = map
            .resolve("ghcr.io/appscode-images/pgpool2:4.6.0")
            .unwrap();
        assert_eq!(
            pg.mounts["/opt/pgpool-II"],
            PathBuf::from("/repo/cache/4.6")
        );
        assert_eq!(
            pg.mounts["/usr/bin/pg_isready"],
            PathBuf::from("/usr/lib/postgresql/15/bin/pg_isready")
        );
        assert_eq!(
            map.resolve("example.com/crash:1").unwrap().command,
            Some(vec!["/bin/false".to_string()])
        );
        assert_eq!(map.resolve("example.com/any:2").unwrap().command, None);
        assert_eq!(
            map.resolve("example.com/any:special-1").unwrap().command,
            Some(vec!["true".to_string()])
        );
        assert!(
            map.resolve("ghcr.io/appscode-images/pgpool2:4.6.1")
                .is_none()
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(ImageMap::parse("images:\n  a:\n    mount: {}\n", Path::new("/")).is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_map_parses_and_covers_every_pgpool_line() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        let map = ImageMap::parse(include_str!("../images.example.yaml"), base).unwrap();
        for line in ["4.3.5", "4.6.1", "4.7.3"] {
            let image = format!("ghcr.io/appscode-images/pgpool2:{line}");
            assert!(map.resolve(&image).is_some(), "{image}");
        }
        let crash = map.resolve("example.invalid/pgpool2-crash:1").unwrap();
        assert!(crash.command.is_some());
        assert!(
            map.resolve("ghcr.io/appscode-images/pgpool2:4.5.3")
                .is_none()
        );
    }
}
