use super::*;
use crate::pgpool::validate::note_reason;

fn wait() -> Note {
    Note::waiting_for_certificates("waiting for cert-manager to issue the Secret(s) pp-server-cert")
}

fn monitoring() -> Note {
    Note::monitoring("no ServiceMonitor: the CRD is not installed")
}

#[test]
fn waiting_for_certificates_has_its_own_condition_and_event_reason() {
    let notes = [monitoring(), wait()];
    assert_eq!(started_reason(&notes), "WaitingForCertificates");
    let events = note_events(&notes, None);
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["MonitoringIncomplete", "WaitingForCertificates"]);
    assert!(events[0].warning, "an incomplete monitoring is a Warning");
    assert!(!events[1].warning, "waiting for cert-manager is expected");
    assert!(events[1].message.contains("pp-server-cert"));
    assert!(!events[0].message.contains("cert-manager"));
}

#[test]
fn other_notes_keep_their_reasons() {
    let notes = [monitoring()];
    assert_eq!(started_reason(&notes), REASON_PROVISIONING_STARTED);
    let events = note_events(&notes, None);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, note_reason::MONITORING_INCOMPLETE);
    assert!(events[0].warning);
    assert_eq!(started_reason(&[]), REASON_PROVISIONING_STARTED);
}

#[test]
fn a_remark_already_in_the_condition_is_not_announced_again() {
    let notes = [monitoring(), wait()];
    let before = started_message(&[monitoring()]);
    let events = note_events(&notes, Some(&before));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "WaitingForCertificates");
    assert!(note_events(&notes, Some(&started_message(&notes))).is_empty());
}
