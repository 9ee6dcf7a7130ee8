use pgpool_api::OpsRequestType;
use pgpool_api::conditions::ops;

use super::super::fixtures::*;
use crate::plan::*;

#[test]
fn steps_follow_the_conditions() {
    let t = OpsRequestType::UpdateVersion;
    let mut conds = Vec::new();
    assert_eq!(next_step(t, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_VERSION, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_VERSION, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Pause);
    cond(
        &mut conds,
        ops::DATABASE_PAUSE_SUCCEEDED,
        "True",
        String::new(),
    );
    assert_eq!(next_step(t, &conds), Step::UpdatePetSets);
    assert_eq!(next_step(OpsRequestType::Restart, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_PETSETS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::RestartPods);
    cond(&mut conds, ops::RESTART_PODS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::UpdateDatabase);
    cond(&mut conds, ops::UPDATE_DATABASE, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Resume);
    cond(&mut conds, ops::ROLLBACK, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::Rollback);
    cond(&mut conds, ops::FAILED, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Done);

    let r = OpsRequestType::Restart;
    let mut conds = Vec::new();
    cond(&mut conds, ops::RESTART, "True", String::new());
    cond(
        &mut conds,
        ops::DATABASE_PAUSE_SUCCEEDED,
        "True",
        String::new(),
    );
    assert_eq!(next_step(r, &conds), Step::RestartPods);
    cond(&mut conds, ops::RESTART_PODS, "True", String::new());
    assert_eq!(next_step(r, &conds), Step::Resume);
}

#[test]
fn configuration_types_change_render_and_restart() {
    for (t, start, change) in [
        (
            OpsRequestType::Reconfigure,
            ops::RECONFIGURE,
            ops::UPDATE_CONFIGURATION,
        ),
        (
            OpsRequestType::RotateAuth,
            ops::ROTATE_AUTH,
            ops::UPDATE_CREDENTIAL,
        ),
    ] {
        let mut conds = Vec::new();
        assert_eq!(next_step(t, &conds), Step::Validate);
        cond(&mut conds, start, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::Pause);
        cond(
            &mut conds,
            ops::DATABASE_PAUSE_SUCCEEDED,
            "True",
            String::new(),
        );
        let want = if t == OpsRequestType::Reconfigure {
            Step::UpdateConfiguration
        } else {
            Step::UpdateCredential
        };
        assert_eq!(next_step(t, &conds), want);
        cond(&mut conds, change, "Unknown", String::new());
        assert_eq!(next_step(t, &conds), want);
        cond(&mut conds, change, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::UpdatePetSetConfig);
        cond(&mut conds, ops::UPDATE_PETSETS, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::RestartPods);
        cond(&mut conds, ops::RESTART_PODS, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::Resume);
    }
}

#[test]
fn reconfigure_tls_changes_the_spec_syncs_certificates_and_restarts() {
    let t = OpsRequestType::ReconfigureTls;
    let mut conds = Vec::new();
    assert_eq!(next_step(t, &conds), Step::Validate);
    cond(&mut conds, ops::RECONFIGURE_TLS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Pause);
    cond(
        &mut conds,
        ops::DATABASE_PAUSE_SUCCEEDED,
        "True",
        String::new(),
    );
    assert_eq!(next_step(t, &conds), Step::UpdateTls);
    cond(&mut conds, ops::UPDATE_TLS, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::UpdateTls);
    cond(&mut conds, ops::UPDATE_TLS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::SyncCertificates);
    cond(&mut conds, ops::CERTIFICATE_SYNCED, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::UpdatePetSetTls);
    cond(&mut conds, ops::UPDATE_PETSETS, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::UpdatePetSetTls);
    cond(&mut conds, ops::UPDATE_PETSETS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::RestartPods);
    cond(&mut conds, ops::RESTART_PODS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Resume);
    cond(&mut conds, ops::ROLLBACK, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::Rollback);
}
