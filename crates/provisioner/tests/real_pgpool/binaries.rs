//! The real pgpool-II binaries the test runs, one per catalog line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::servers::{client_command, find_program, run, text};

/// The catalog's pgpool-II lines with a real binary to test, in the order UpdateVersion
/// walks them (4.3 -> 4.6 -> 4.7; a rollback walks back).
pub(crate) const LINES: [&str; 3] = ["4.3", "4.6", "4.7"];

/// One real pgpool-II binary of a catalog line.
pub(crate) struct PgpoolBinary {
    /// The catalog line, e.g. `4.7`.
    pub(crate) line: &'static str,
    /// What `pgpool --version` says, e.g. `4.7.3`.
    pub(crate) release: String,
    /// The exact package version, e.g. `4.7.3-1`.
    pub(crate) package: String,
    pub(crate) pgpool: PathBuf,
    pub(crate) pcp_node_count: PathBuf,
    /// The folder it was installed into (`.cache/pgpool/<line>`); `None` for the system's.
    folder: Option<PathBuf>,
}

impl PgpoolBinary {
    /// The binary as another user can run it: when a folder above `.cache/pgpool/<line>` is
    /// closed to other users (a clone in a private temporary directory), a copy in `dir`.
    pub(crate) fn runnable_by_others(self, dir: &Path) -> Result<Self, String> {
        let Some(folder) = &self.folder else {
            return Ok(self);
        };
        let open = folder
            .ancestors()
            .all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if open {
            return Ok(self);
        }
        let copy = dir.join(format!("pgpool-{}", self.line));
        let out = run(Command::new("cp").arg("-a").arg(folder).arg(&copy));
        if !out.status.success() {
            return Err(format!(
                "copy {} to {}: {}",
                folder.display(),
                copy.display(),
                text(&out.stderr)
            ));
        }
        let moved = |p: &Path| copy.join(p.strip_prefix(folder).expect("inside the folder"));
        Ok(Self {
            pgpool: moved(&self.pgpool),
            pcp_node_count: moved(&self.pcp_node_count),
            folder: Some(copy.clone()),
            ..self
        })
    }
}

/// The release `pgpool --version` reports (`pgpool-II version 4.7.3 (tasukiboshi)`).
fn release_of(pgpool: &Path) -> Result<String, String> {
    let out = run(client_command(pgpool).arg("--version"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    said.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| format!("{} --version said {said:?}", pgpool.display()))
}

/// The binary of `line` under `.cache/pgpool/<line>` (scripts/install-pgpool-versions.sh).
fn cached_binary(line: &'static str) -> Result<PgpoolBinary, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate is two levels below the workspace root");
    let dir = workspace.join(".cache/pgpool").join(line);
    let package = fs::read_to_string(dir.join("VERSION"))
        .map_err(|e| format!("{}: {e}", dir.join("VERSION").display()))?
        .trim()
        .to_string();
    let [pgpool, pcp_node_count] = ["pgpool", "pcp_node_count"].map(|t| dir.join("bin").join(t));
    for tool in [&pgpool, &pcp_node_count] {
        if !tool.is_file() {
            return Err(format!("no {}", tool.display()));
        }
    }
    Ok(PgpoolBinary {
        line,
        release: release_of(&pgpool)?,
        package,
        pgpool,
        pcp_node_count,
        folder: Some(dir),
    })
}

/// The system's pgpool (Debian's `pgpool2` package), whatever line it is.
fn system_binary() -> Result<PgpoolBinary, String> {
    let pgpool = find_program("pgpool").ok_or("no pgpool on PATH or in /usr/sbin")?;
    let pcp_node_count =
        find_program("pcp_node_count").ok_or("no pcp_node_count on PATH or in /usr/sbin")?;
    let release = release_of(&pgpool)?;
    let line = LINES
        .into_iter()
        .find(|l| release.starts_with(&format!("{l}.")))
        .ok_or_else(|| format!("the system pgpool is {release}, not a line of {LINES:?}"))?;
    let out = run(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "pgpool2"]));
    let package = Some(text(&out.stdout).trim().to_string())
        .filter(|v| out.status.success() && !v.is_empty())
        .unwrap_or_else(|| release.clone());
    Ok(PgpoolBinary {
        line,
        release,
        package,
        pgpool,
        pcp_node_count,
        folder: None,
    })
}

/// The real binary of each line, or why there is none: `.cache/pgpool/<line>`, else the
/// system's pgpool when it is of that line.
pub(crate) fn find_binaries() -> Vec<Result<PgpoolBinary, String>> {
    let mut system = Some(system_binary());
    LINES
        .into_iter()
        .map(|line| {
            let cached_err = match cached_binary(line) {
                Ok(binary) => return Ok(binary),
                Err(e) => e,
            };
            match system.take() {
                Some(Ok(sys)) if sys.line == line => Ok(sys),
                Some(Err(sys_err)) => {
                    system = Some(Err(sys_err.clone()));
                    Err(format!("{cached_err}; {sys_err}"))
                }
                other => {
                    system = other;
                    Err(cached_err)
                }
            }
        })
        .map(|found| {
            found.and_then(|b| {
                if b.release.starts_with(&format!("{}.", b.line)) {
                    Ok(b)
                } else {
                    let (path, release, line) = (b.pgpool.display(), &b.release, b.line);
                    Err(format!("{path} is {release}, not {line}.x"))
                }
            })
        })
        .collect()
}
