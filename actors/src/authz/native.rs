//! `NativePolicy`: the 4-tier rules of contract.md in Rust, the reference
//! every Rego bundle is checked against (`actors/tests/policy_equivalence.rs`).

use super::{PolicyEngine, PolicyInput};
use crate::domain::{Decision, Tier, Trust, Verdict};
use serde_json::Value;

/// Base tier, +1 over the amount limit, +1 for a low-trust session at
/// tier >= 1, capped at 3.
pub struct NativePolicy;

pub const NATIVE_POLICY_HASH: &str = "native-4tier-v1";

/// What a tier decides.
pub fn verdict_of(tier: Tier) -> Verdict {
    match tier {
        Tier::Observe | Tier::Reversible => Verdict::Allow,
        Tier::Confirm => Verdict::Confirm,
        Tier::Forbidden => Verdict::Deny,
    }
}

impl PolicyEngine for NativePolicy {
    fn decide(&self, input: &PolicyInput) -> Decision {
        let cap = &input.capability;
        let mut level = cap.tier.level();
        let mut reasons = vec![format!("{} is tier {}", cap.name, level)];
        if let (Some(limit), Some(amount)) = (cap.amount_limit, input.args.get("amount").and_then(Value::as_f64)) {
            if amount > limit {
                level += 1;
                reasons.push(format!("amount {amount} exceeds limit {limit}: +1"));
            }
        }
        if input.trust == Trust::Low && cap.tier >= Tier::Reversible {
            level += 1;
            reasons.push("low-trust session: +1".to_owned());
        }
        if level > 3 {
            reasons.push("capped at tier 3".to_owned());
        }
        let tier = Tier::from_level(level.min(3));
        Decision { decision: verdict_of(tier), tier, reasons, policy_hash: NATIVE_POLICY_HASH.to_owned() }
    }

    fn hash(&self) -> &str {
        NATIVE_POLICY_HASH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Capability;
    use serde_json::json;
    use std::sync::Arc;

    fn decide(tier: Tier, limit: Option<f64>, args: Value, trust: Trust) -> Decision {
        let mut cap = Capability::new("t", tier);
        cap.amount_limit = limit;
        NativePolicy.decide(&PolicyInput::new(Arc::new(cap), args, trust))
    }

    #[test]
    fn base_tiers_map_to_verdicts() {
        let d = |t| decide(t, None, json!({}), Trust::Normal).decision;
        assert_eq!(d(Tier::Observe), Verdict::Allow);
        assert_eq!(d(Tier::Reversible), Verdict::Allow);
        assert_eq!(d(Tier::Confirm), Verdict::Confirm);
        assert_eq!(d(Tier::Forbidden), Verdict::Deny);
    }

    #[test]
    fn escalation_rules_match_the_contract() {
        // amount over the limit: +1
        let d = decide(Tier::Reversible, Some(100.0), json!({"amount": 150}), Trust::Normal);
        assert_eq!((d.tier, d.decision), (Tier::Confirm, Verdict::Confirm));
        // at the limit: no escalation
        assert_eq!(decide(Tier::Reversible, Some(100.0), json!({"amount": 100}), Trust::Normal).tier, Tier::Reversible);
        // amount not a number: no escalation
        assert_eq!(
            decide(Tier::Reversible, Some(1.0), json!({"amount": "lots"}), Trust::Normal).tier,
            Tier::Reversible
        );
        // low trust escalates tier >= 1 only
        assert_eq!(decide(Tier::Observe, None, json!({}), Trust::Low).tier, Tier::Observe);
        assert_eq!(decide(Tier::Reversible, None, json!({}), Trust::Low).tier, Tier::Confirm);
        // both, capped at 3
        let d = decide(Tier::Confirm, Some(1.0), json!({"amount": 5}), Trust::Low);
        assert_eq!((d.tier, d.decision), (Tier::Forbidden, Verdict::Deny));
        assert!(d.reasons.iter().any(|r| r.contains("capped")));
        assert_eq!(d.policy_hash, NATIVE_POLICY_HASH);
    }
}
