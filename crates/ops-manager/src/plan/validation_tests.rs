use pgpool_api::ops::ApplyPolicy;
use pgpool_api::{Pgpool, PgpoolOpsRequest, PgpoolVersion};

use super::super::fixtures::*;
use crate::plan::*;

fn run(
    req: &PgpoolOpsRequest,
    pp: Option<&Pgpool>,
    cur: Option<&PgpoolVersion>,
    tgt: Option<&PgpoolVersion>,
) -> Verdict {
    validate(ValidationInput {
        request: req,
        pgpool: pp,
        current: cur,
        target: tgt,
    })
}

fn fail_reason(v: Verdict) -> (&'static str, String) {
    match v {
        Verdict::Fail { reason, message } => (reason, message),
        other => panic!("expected Fail, got {other:?}"),
    }
}

#[test]
fn validation_table() {
    let v453 = version("4.5.3", ">= 4.5.3, <= 4.6.0", false);
    let v460 = version("4.6.0", ">= 4.6.0, <= 4.6.0", false);
    let old = version("4.4.5", ">= 4.4.5, <= 4.6.0", true);
    let ready = pgpool("4.5.3", "Ready", false);

    assert_eq!(
        run(&update("4.6.0"), Some(&ready), Some(&v453), Some(&v460)),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.6.0".into()
        }
    );
    let (r, m) = fail_reason(run(&update("4.6.0"), None, None, Some(&v460)));
    assert_eq!(r, "PgpoolNotFound");
    assert!(m.contains("demo/pp not found"), "{m}");
    let (r, m) = fail_reason(run(&update("9.9.9"), Some(&ready), Some(&v453), None));
    assert_eq!(r, "VersionNotFound");
    assert!(m.contains("\"9.9.9\" not found"), "{m}");
    let (r, m) = fail_reason(run(&update("4.4.5"), Some(&ready), Some(&v453), Some(&old)));
    assert_eq!(r, "VersionDeprecated");
    assert!(m.contains("deprecated"), "{m}");
    let on460 = pgpool("4.6.0", "Ready", false);
    let (r, m) = fail_reason(run(
        &update("4.5.3"),
        Some(&on460),
        Some(&v460),
        Some(&v453),
    ));
    assert_eq!(r, "UpdateNotAllowed");
    assert!(m.contains("from 4.6.0 to 4.5.3"), "{m}");
    assert!(m.contains(">= 4.6.0, <= 4.6.0"), "{m}");
    let halted = pgpool("4.5.3", "Halted", true);
    let (r, m) = fail_reason(run(
        &update("4.6.0"),
        Some(&halted),
        Some(&v453),
        Some(&v460),
    ));
    assert_eq!(r, "PgpoolHalted");
    assert!(m.contains("spec.halted"), "{m}");
    let critical = pgpool("4.5.3", "Critical", false);
    assert!(matches!(
        run(&update("4.6.0"), Some(&critical), Some(&v453), Some(&v460)),
        Verdict::WaitForReady { message } if message.contains("Critical")
    ));
    // Same version: done, even when not Ready.
    assert!(matches!(
        run(&update("4.5.3"), Some(&critical), Some(&v453), Some(&v453)),
        Verdict::AlreadyDone { .. }
    ));
    // Current version missing from the catalog.
    let (r, _) = fail_reason(run(&update("4.6.0"), Some(&ready), None, Some(&v460)));
    assert_eq!(r, "CurrentVersionNotFound");
    // apply: Always does not wait.
    let mut always = update("4.6.0");
    always.spec.apply = Some(ApplyPolicy::Always);
    assert!(matches!(
        run(&always, Some(&critical), Some(&v453), Some(&v460)),
        Verdict::Proceed { .. }
    ));
}

#[test]
fn constraints_use_the_target_spec_version() {
    // The catalog name differs from spec.version: constraints read spec.version.
    let v453 = version("4.5.3", ">= 4.5.3, <= 4.6.0", false);
    let mut custom = version("custom", "", false);
    custom.spec.version = "4.6.0".into();
    let ready = pgpool("4.5.3", "Ready", false);
    assert!(matches!(
        run(&update("custom"), Some(&ready), Some(&v453), Some(&custom)),
        Verdict::Proceed { .. }
    ));
    custom.spec.version = "4.7.0".into();
    assert_eq!(
        fail_reason(run(
            &update("custom"),
            Some(&ready),
            Some(&v453),
            Some(&custom)
        ))
        .0,
        "UpdateNotAllowed"
    );
}

#[test]
fn restart_validation() {
    let req = request("r", "Restart", "", 0, None);
    let ready = pgpool("4.5.3", "Ready", false);
    assert_eq!(
        run(&req, Some(&ready), None, None),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.5.3".into()
        }
    );
    let halted = pgpool("4.5.3", "Halted", true);
    assert_eq!(
        fail_reason(run(&req, Some(&halted), None, None)).0,
        "PgpoolHalted"
    );
}

#[test]
fn reconfigure_tls_is_validated_against_the_pgpool() {
    let mut req = request("r", "ReconfigureTLS", "", 0, None);
    req.spec.tls = Some(serde_json::from_value(serde_json::json!({"remove": true})).unwrap());
    let ready = pgpool("4.5.3", "Ready", false);
    // remove on a Pgpool without TLS: nothing to do
    assert!(matches!(
        run(&req, Some(&ready), None, None),
        Verdict::AlreadyDone { .. }
    ));
    assert_eq!(fail_reason(run(&req, None, None, None)).0, "PgpoolNotFound");
    // add TLS: go
    req.spec.tls = Some(Default::default());
    assert_eq!(
        run(&req, Some(&ready), None, None),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.5.3".into()
        }
    );
    let halted = pgpool("4.5.3", "Halted", true);
    assert_eq!(
        fail_reason(run(&req, Some(&halted), None, None)).0,
        "PgpoolHalted"
    );
    let mut not_ready = pgpool("4.5.3", "NotReady", false);
    not_ready.status.as_mut().unwrap().phase = Some(pgpool_api::PgpoolPhase::NotReady);
    assert!(matches!(
        run(&req, Some(&not_ready), None, None),
        Verdict::WaitForReady { .. }
    ));
}
