//! What a binary's `main` does around [`run`](crate::run): one malloc arena, a small
//! multi-threaded tokio runtime, and the exit code. [`run`](crate::run) itself installs
//! tracing, serves HTTP and turns SIGTERM/SIGINT into the shutdown token (once, in
//! `signals`).
//!
//! A binary whose `main` only runs the operator:
//!
//! ```no_run
//! use operator_kit::{CommonArgs, OperatorInfo, RunContext};
//!
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: CommonArgs,
//! }
//!
//! const INFO: OperatorInfo = OperatorInfo {
//!     name: "example-operator",
//!     version: env!("CARGO_PKG_VERSION"),
//!     default_lease: "example-operator-leader",
//! };
//!
//! fn main() -> std::process::ExitCode {
//!     let cli: Cli = operator_kit::parse_args(&INFO);
//!     operator_kit::bootstrap::main(INFO, cli.common, |ctx: RunContext| async move {
//!         let handle = ctx.controller("example");
//!         handle.set_synced();
//!         handle.shutdown_signal().await;
//!         Ok(())
//!     })
//! }
//! ```

use std::future::Future;
use std::process::ExitCode;

use crate::args::CommonArgs;
use crate::info::OperatorInfo;
use crate::runtime::{RunContext, report, run};

/// Worker threads of the runtime [`runtime`] builds.
pub const WORKER_THREADS: usize = 2;

/// Runs the operator as a whole `main`: [`limit_malloc_arenas`], builds the [`runtime`],
/// runs [`run`](crate::run) on it and turns the result into the exit code with
/// [`report`](crate::report).
pub fn main<F, Fut>(info: OperatorInfo, args: CommonArgs, controllers: F) -> ExitCode
where
    F: FnOnce(RunContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    block_on(&info, || async move {
        let result = run(info, args, controllers).await;
        report(&info, result)
    })
}

/// [`limit_malloc_arenas`], then runs `main` on a fresh [`runtime`] and returns its exit
/// code; for binaries that do more than [`run`](crate::run) (subcommands). When the
/// runtime cannot be built, prints one line and returns failure.
pub fn block_on<F, Fut>(info: &OperatorInfo, main: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ExitCode>,
{
    limit_malloc_arenas();
    match runtime() {
        Ok(rt) => rt.block_on(main()),
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", info.name);
            ExitCode::FAILURE
        }
    }
}

/// One malloc arena for all threads (glibc): the operator allocates little per thread, and
/// every extra arena keeps its own free memory (about a megabyte of resident memory here).
/// Call it first in `main`, before any other thread exists; a no-op on other platforms.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `M_ARENA_MAX` parameter of `mallopt`.
        const M_ARENA_MAX: std::os::raw::c_int = -8;
        unsafe extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        // SAFETY: mallopt only sets an allocator tunable; it is called before any other
        // thread exists.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// A multi-threaded runtime with [`WORKER_THREADS`] workers whatever the node's core count:
/// the work is I/O-bound, and every worker thread costs memory (stack, allocator state).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const INFO: OperatorInfo = OperatorInfo {
        name: "bootstrap-test",
        version: "0.0.0",
        default_lease: "bootstrap-test-leader",
    };

    #[test]
    fn block_on_runs_main_on_a_two_worker_runtime() {
        let code = block_on(&INFO, || async {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            assert_eq!(workers, WORKER_THREADS);
            // Timers are enabled (a timeout panics on a runtime without them).
            assert!(
                tokio::time::timeout(Duration::from_secs(1), async {})
                    .await
                    .is_ok()
            );
            ExitCode::from(7)
        });
        assert_eq!(code, ExitCode::from(7));
    }
}
