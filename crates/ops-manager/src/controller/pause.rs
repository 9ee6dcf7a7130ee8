//! Step Pause: the pause handshake with the provisioner (the Pgpool's `Paused` condition).

use pgpool_api::conditions::{self, ops};

use super::cluster::PauseState;
use super::error::Result;
use super::run::{Flow, Run};

impl Run<'_> {
    /// The message of `DatabasePauseSucceeded=Unknown` while the pause is asked for.
    pub(super) fn pause_requested_message(&self) -> String {
        format!("asked the provisioner to pause Pgpool {}", self.pgpool)
    }

    /// Step Pause: ask for the pause and wait (until the timeout) for the provisioner to
    /// acknowledge it.
    pub(super) async fn step_pause(&mut self) -> Result<Flow> {
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_none() {
            // Record the start of the handshake before asking, so the timeout survives restarts
            // and a failure knows there is a pause to undo.
            let msg = self.pause_requested_message();
            self.record(
                ops::DATABASE_PAUSE_SUCCEEDED,
                conditions::UNKNOWN,
                "PauseRequested",
                &msg,
                Some("Pausing"),
            )
            .await?;
        }
        match self.pause_pgpool().await? {
            PauseState::Gone => self.fail_pgpool_gone().await,
            PauseState::Acknowledged => {
                let msg = format!("the provisioner paused Pgpool {}", self.pgpool);
                // Written with the next step's record: repeating the handshake after a crash
                // finds the pause acknowledged again.
                self.complete(
                    ops::DATABASE_PAUSE_SUCCEEDED,
                    "DatabasePauseSucceeded",
                    ops::DATABASE_PAUSE_SUCCEEDED,
                    "Paused",
                    &msg,
                );
                Ok(Flow::Next)
            }
            PauseState::Requested => {
                let msg = format!(
                    "the provisioner did not acknowledge the pause of Pgpool {} within {} (its \
                     Paused condition stayed Unknown): check that pgpool-provisioner is running \
                     and watching this namespace",
                    self.pgpool,
                    self.timeout_text()
                );
                let left = self.time_left(ops::DATABASE_PAUSE_SUCCEEDED);
                self.wait_or_fail(left, "PauseNotAcknowledged", msg).await
            }
        }
    }
}
