//! What receivers are sent, built from an alert as the log holds it. Pure:
//! the time is an argument.
//!
//! - webhook: `WEBHOOK_VERSION`ed JSON, signed with HMAC-SHA256 over the
//!   exact body (`SIGNATURE_HEADER: sha256=<hex>`), identified by the
//!   state change's delivery id (`DELIVERY_HEADER`), the same on every retry.
//! - Alertmanager API v2: a list of `{labels, annotations, startsAt, endsAt,
//!   generatorURL}`. A firing alert carries an `endsAt` a few resend periods
//!   ahead (as Prometheus does), so it resolves by itself if warden stops
//!   sending; a resolved one carries its real end.

use crate::domain::{AlertRecord, AlertState};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, UNIX_EPOCH};

/// The webhook body's `version`: bumped when a field changes meaning or goes away.
pub const WEBHOOK_VERSION: u32 = 1;
/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Warden-Signature";
/// The state change's id: receivers count one per id.
pub const DELIVERY_HEADER: &str = "X-Warden-Delivery";
/// A firing alert sent to Alertmanager stays firing this many resend periods
/// without news (then Alertmanager resolves it).
pub const FIRING_VALID_RESENDS: u32 = 3;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The link receivers show: the dashboard's alerts section.
pub fn dashboard_link(dashboard_url: &str, alert: &AlertRecord) -> String {
    format!("{}/#alert-{}", dashboard_url.trim_end_matches('/'), alert.fingerprint)
}

/// The alert as the webhook and `/v1/alerts` show it.
pub fn alert_json(alert: &AlertRecord, dashboard_url: &str) -> Value {
    let mut annotations = alert.annotations.clone();
    annotations.insert("dashboard".into(), dashboard_link(dashboard_url, alert));
    let mut v = json!({
        "fingerprint": alert.fingerprint,
        "name": alert.name,
        "state": alert.state.as_str(),
        "severity": alert.severity,
        "episode": alert.episode,
        "labels": alert.labels,
        "annotations": annotations,
        "starts_at": rfc3339(alert.starts_at),
        "correlation_id": alert.cause,
    });
    if let Some(end) = alert.ends_at {
        v["ends_at"] = json!(rfc3339(end));
    }
    v
}

/// The webhook body announcing `state` of `alert`.
pub fn webhook_body(alert: &AlertRecord, state: AlertState, dashboard_url: &str, sent_at_ms: u64) -> Vec<u8> {
    let mut a = alert_json(alert, dashboard_url);
    // A firing change delivered after the alert resolved still says what it announces.
    a["state"] = json!(state.as_str());
    if state == AlertState::Firing {
        a.as_object_mut().map(|o| o.remove("ends_at"));
    }
    let body = json!({
        "version": WEBHOOK_VERSION,
        "delivery_id": alert.delivery_id(state),
        "sent_at": rfc3339(sent_at_ms),
        "alert": a,
    });
    serde_json::to_vec(&body).expect("JSON values always encode")
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// One alert in Alertmanager's API v2 shape, as of `now_ms`.
pub fn alertmanager_alert(alert: &AlertRecord, dashboard_url: &str, now_ms: u64, resend_every: Duration) -> Value {
    let ends_at = match (alert.state, alert.ends_at) {
        (AlertState::Resolved, Some(end)) => end,
        _ => now_ms + resend_every.as_millis() as u64 * u64::from(FIRING_VALID_RESENDS),
    };
    let mut annotations = alert.annotations.clone();
    annotations.insert("dashboard".into(), dashboard_link(dashboard_url, alert));
    annotations.insert("correlation_id".into(), alert.cause.clone());
    json!({
        "labels": alert.labels,
        "annotations": annotations,
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(ends_at),
        "generatorURL": dashboard_link(dashboard_url, alert),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alert(state: AlertState) -> AlertRecord {
        AlertRecord {
            fingerprint: "0123456789abcdef".into(),
            name: "WardenBreakerOpen".into(),
            state,
            severity: "page".into(),
            episode: 3,
            labels: BTreeMap::from([("alertname".into(), "WardenBreakerOpen".into())]),
            annotations: BTreeMap::from([("summary".into(), "x is open".into())]),
            starts_at: 1_700_000_000_000,
            ends_at: (state == AlertState::Resolved).then_some(1_700_000_060_000),
            cause: "breaker:x".into(),
            raised_seq: 7,
            resolved_seq: None,
            delivered: vec![],
        }
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_body_is_versioned_and_names_its_state_change() {
        let body = webhook_body(&alert(AlertState::Resolved), AlertState::Firing, "http://d:8000/", 1_700_000_061_000);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["delivery_id"], "0123456789abcdef-3-firing");
        assert_eq!(v["alert"]["state"], "firing");
        assert!(v["alert"].get("ends_at").is_none(), "the firing change has no end");
        assert_eq!(v["alert"]["annotations"]["dashboard"], "http://d:8000/#alert-0123456789abcdef");
        assert_eq!(v["sent_at"], "2023-11-14T22:14:21.000Z");
        let resolved = webhook_body(&alert(AlertState::Resolved), AlertState::Resolved, "http://d", 0);
        let v: Value = serde_json::from_slice(&resolved).unwrap();
        assert_eq!(
            (v["delivery_id"].as_str(), v["alert"]["ends_at"].as_str()),
            (Some("0123456789abcdef-3-resolved"), Some("2023-11-14T22:14:20.000Z"))
        );
    }

    #[test]
    fn alertmanager_gets_a_validity_window_while_firing_and_the_real_end_once_resolved() {
        let resend = Duration::from_secs(45);
        let firing = alertmanager_alert(&alert(AlertState::Firing), "http://d", 1_700_000_000_000, resend);
        assert_eq!(firing["endsAt"], rfc3339(1_700_000_000_000 + 135_000));
        assert_eq!(firing["generatorURL"], "http://d/#alert-0123456789abcdef");
        assert_eq!(firing["annotations"]["correlation_id"], "breaker:x");
        let resolved = alertmanager_alert(&alert(AlertState::Resolved), "http://d", 1_800_000_000_000, resend);
        assert_eq!(resolved["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(resolved["startsAt"], "2023-11-14T22:13:20.000Z");
    }
}
