use super::super::fixtures::*;
use crate::plan::*;

#[test]
fn queue_rules() {
    let a = request("a", "UpdateVersion", "4.6.0", 0, Some("Pending"));
    let b = request("b", "UpdateVersion", "4.6.0", 5, None);
    let r = request("r", "Restart", "", 3, Some("Pending"));
    let p = request("p", "Restart", "", 1, Some("Progressing"));
    let done = request("d", "UpdateVersion", "4.6.0", 10, Some("Successful"));

    // Alone: start.
    assert_eq!(
        queue_decision(&a, std::slice::from_ref(&a)),
        QueueDecision::Start
    );
    // A final request does not count.
    assert_eq!(
        queue_decision(&a, &[a.clone(), done.clone()]),
        QueueDecision::Start
    );
    // Something Progressing: wait behind it.
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone(), p.clone()]),
        QueueDecision::Wait { behind: "p".into() }
    );
    // A newer UpdateVersion already Progressing: the older pending one is skipped.
    let newer_running = request("n", "UpdateVersion", "4.6.0", 9, Some("Progressing"));
    assert_eq!(
        queue_decision(&a, &[a.clone(), newer_running.clone()]),
        QueueDecision::Skip { newer: "n".into() }
    );
    // Two UpdateVersion pending: the older is skipped, naming the newer.
    assert_eq!(
        queue_decision(&a, &[a.clone(), b.clone()]),
        QueueDecision::Skip { newer: "b".into() }
    );
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone()]),
        QueueDecision::Start
    );
    // An older request of another type goes first.
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone(), r.clone()]),
        QueueDecision::Wait { behind: "r".into() }
    );
    assert_eq!(
        queue_decision(&r, &[a.clone(), b.clone(), r.clone()]),
        QueueDecision::Start
    );
    // Same creation time: the name orders.
    let x = request("x", "UpdateVersion", "4.6.0", 7, None);
    let y = request("y", "UpdateVersion", "4.6.0", 7, None);
    assert_eq!(
        queue_decision(&x, &[x.clone(), y.clone()]),
        QueueDecision::Skip { newer: "y".into() }
    );
    // A pending request being deleted does not block.
    let mut gone = request("g", "Restart", "", -5, Some("Pending"));
    gone.metadata.deletion_timestamp = a.metadata.creation_timestamp.clone();
    assert_eq!(queue_decision(&b, &[b.clone(), gone]), QueueDecision::Start);
}
