//! Containers as processes, built from util-linux: `nsenter` into the pod's network
//! namespace, `unshare` a mount, PID, UTS and IPC namespace, and a small `sh` script that
//! gives the container the host's file system through a private overlay (writes stay in a
//! tmpfs), mounts the pod's volumes and the image's host paths at their paths, `pivot_root`s
//! into it and `exec`s the command through `setpriv` as the pod's user: the command is PID 1
//! of its namespace, so signals behave as in a container (no handler, no SIGTERM).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::probes::{BoxFuture, Exec, run_with_timeout};

/// The PATH of a container that sets none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The identity the command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// runAsUser.
    pub uid: u32,
    /// runAsGroup (default: the uid's number, as the image has no passwd here).
    pub gid: u32,
    /// fsGroup and supplementalGroups.
    pub groups: Vec<u32>,
}

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Host folder of this container (its overlay lives in a tmpfs mounted here).
    pub base: PathBuf,
    /// Network namespace name under /run/netns.
    pub netns: Option<String>,
    /// Hostname (the pod's name).
    pub hostname: String,
    /// Bind mounts, applied in order.
    pub mounts: Vec<Mount>,
    /// Host file shown at /etc/hosts.
    pub hosts_file: Option<PathBuf>,
    /// Run as this user; root when `None`.
    pub user: Option<User>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
    /// `readOnlyRootFilesystem: true`: the root is remounted read-only (volumes stay as
    /// mounted).
    pub read_only_root: bool,
    /// workingDir.
    pub workdir: Option<String>,
    /// Command and args.
    pub argv: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Host file receiving stdout and stderr.
    pub log: PathBuf,
}

/// Quotes a word for `sh`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn setpriv(user: Option<&User>, no_new_privs: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = user {
        out.push("setpriv".to_string());
        out.push(format!("--reuid={}", u.uid));
        out.push(format!("--regid={}", u.gid));
        if u.groups.is_empty() {
            out.push("--clear-groups".into());
        } else {
            let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
            out.push(format!("--groups={}", groups.join(",")));
        }
        if no_new_privs {
            out.push("--no-new-privs".into());
        }
        out.push("--".into());
    } else if no_new_privs {
        out.extend(["setpriv".into(), "--no-new-privs".into(), "--".into()]);
    }
    out
}

/// The setup script (pure). It runs as PID 1 of the new namespaces with the command in
/// `"$@"` and ends by `exec`ing it.
pub fn script(l: &Launch) -> String {
    let b = quote(&l.base.to_string_lossy());
    let mut s = String::new();
    s.push_str("set -e\n_path=\"$PATH\"\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
    s.push_str(&format!("mount -t tmpfs -o mode=0755 tmpfs {b}\n"));
    s.push_str(&format!("mkdir -p {b}/upper {b}/work {b}/root\n"));
    s.push_str(&format!(
        "mount -t overlay overlay -o lowerdir=/,upperdir={b}/upper,workdir={b}/work {b}/root\n"
    ));
    s.push_str(&format!("mount --rbind /dev {b}/root/dev\n"));
    s.push_str(&format!("mount --rbind /sys {b}/root/sys\n"));
    s.push_str(&format!("mount -t proc proc {b}/root/proc\n"));
    s.push_str(&format!("mkdir -p {b}/root/.oldroot\ncd {b}/root\n"));
    s.push_str("pivot_root . .oldroot\ncd /\n");
    // from here paths resolve inside the container (symlinks like /var/run included)
    for m in &l.mounts {
        let src = quote(&format!("/.oldroot{}", m.source.to_string_lossy()));
        let dst = quote(&m.target);
        s.push_str(&format!(
            "if [ -d {src} ]; then mkdir -p {dst}; else mkdir -p \"$(dirname {dst})\"; [ -e {dst} ] || : > {dst}; fi\n"
        ));
        s.push_str(&format!("mount --bind {src} {dst}\n"));
        if m.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {dst}\n"));
        }
    }
    if let Some(h) = &l.hosts_file {
        let src = quote(&format!("/.oldroot{}", h.to_string_lossy()));
        s.push_str(&format!("mount --bind {src} /etc/hosts\n"));
    }
    s.push_str("umount -l /.oldroot\nrmdir /.oldroot\n");
    s.push_str(&format!("hostname {}\n", quote(&l.hostname)));
    if let Some(w) = &l.workdir {
        s.push_str(&format!("mkdir -p {w}\n", w = quote(w)));
    }
    if l.read_only_root {
        s.push_str("mount -o remount,bind,ro /\n");
    }
    if let Some(w) = &l.workdir {
        s.push_str(&format!("cd {w}\n", w = quote(w)));
    }
    s.push_str("PATH=\"$_path\"\nunset _path\n");
    let prefix: Vec<String> = setpriv(l.user.as_ref(), l.no_new_privs)
        .iter()
        .map(|w| quote(w))
        .collect();
    s.push_str(&format!("exec {} \"$@\"\n", prefix.join(" ")).replace("exec  ", "exec "));
    s
}

fn base_env(cmd: &mut Command, env: &[(String, String)]) {
    cmd.env_clear();
    if !env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
}

/// The command that starts the container (without spawning it).
pub fn command(l: &Launch) -> anyhow::Result<Command> {
    let mut cmd = Command::new("nsenter");
    if let Some(ns) = &l.netns {
        cmd.arg(format!("--net=/run/netns/{ns}"));
    }
    cmd.args([
        "--",
        "unshare",
        "--mount",
        "--pid",
        "--uts",
        "--ipc",
        "--fork",
        "--kill-child=SIGKILL",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
    ]);
    cmd.arg(script(l)).arg("sh").args(&l.argv);
    base_env(&mut cmd, &l.env);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&l.log)
        .with_context(|| format!("opening {}", l.log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    Ok(cmd)
}

/// A started container.
#[derive(Debug)]
pub struct Running {
    /// The `unshare` process: it exits when PID 1 does, with its status.
    pub child: Child,
    /// Host PID of the container's PID 1.
    pub pid: i32,
}

/// Host PID of the first child of `parent`, once it exists.
async fn first_child(parent: u32) -> anyhow::Result<i32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return Ok(pid);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the container process of {parent} did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a container.
pub async fn start(l: &Launch) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&l.base)?;
    let mut child = command(l)?.spawn().context("starting nsenter/unshare")?;
    let parent = child.id().context("no pid")?;
    match first_child(parent).await {
        Ok(pid) => Ok(Running { child, pid }),
        Err(e) => {
            let _ = child.kill().await;
            Err(e)
        }
    }
}

/// Sends `signal` to a host PID (ignoring a process that is already gone).
pub fn signal(pid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Runs commands inside a running container's namespaces, as its user, with its env.
#[derive(Debug, Clone)]
pub struct ContainerExec {
    /// Host PID of the container's PID 1.
    pub pid: i32,
    /// The container's user.
    pub user: Option<User>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// Host file receiving the commands' output.
    pub log: Option<PathBuf>,
}

impl ContainerExec {
    /// The command running `argv` in the container.
    pub fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid))
            .args([
                "--net", "--mount", "--pid", "--uts", "--ipc", "--root", "--wd", "--",
            ])
            .args(setpriv(self.user.as_ref(), false))
            .args(argv);
        base_env(&mut cmd, &self.env);
        let out = self
            .log
            .as_ref()
            .and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            })
            .map(Stdio::from);
        cmd.stdin(Stdio::null())
            .stdout(out.unwrap_or_else(Stdio::null))
            .stderr(Stdio::null());
        cmd
    }
}

impl Exec for ContainerExec {
    fn run<'a>(&'a self, command: &'a [String], timeout: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if command.is_empty() {
                return false;
            }
            run_with_timeout(self.command(command), timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            base: "/state/pods/u/c".into(),
            netns: Some("ln-1".into()),
            hostname: "p-0".into(),
            mounts: vec![Mount {
                source: "/state/pods/u/volumes/cfg".into(),
                target: "/etc/pgpool-config".into(),
                read_only: true,
            }],
            hosts_file: Some("/state/pods/u/hosts".into()),
            user: Some(User {
                uid: 70,
                gid: 70,
                groups: vec![70],
            }),
            no_new_privs: true,
            read_only_root: true,
            workdir: None,
            argv: vec!["/opt/pgpool-II/bin/pgpool".into(), "-n".into()],
            env: vec![],
            log: "/dev/null".into(),
        }
    }

    #[test]
    fn script_pivots_before_mounting_volumes_and_execs_as_the_user() {
        let s = script(&launch());
        let pivot = s.find("pivot_root").unwrap();
        let volume = s
            .find("mount --bind '/.oldroot/state/pods/u/volumes/cfg' '/etc/pgpool-config'")
            .unwrap();
        assert!(pivot < volume, "{s}");
        assert!(s.contains("mount -o remount,bind,ro '/etc/pgpool-config'"));
        assert!(s.contains("mount --bind '/.oldroot/state/pods/u/hosts' /etc/hosts"));
        let ro = s.find("mount -o remount,bind,ro /\n").unwrap();
        assert!(ro > s.find("rmdir /.oldroot").unwrap(), "{s}");
        assert!(s.ends_with(
            "exec 'setpriv' '--reuid=70' '--regid=70' '--groups=70' '--no-new-privs' '--' \"$@\"\n"
        ));
    }

    #[test]
    fn root_without_hardening_execs_the_command_directly() {
        let mut l = launch();
        l.user = None;
        l.no_new_privs = false;
        l.read_only_root = false;
        let s = script(&l);
        assert!(s.ends_with("exec \"$@\"\n"));
        assert!(!s.contains("remount,bind,ro /\n"));
    }

    #[test]
    fn quote_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
