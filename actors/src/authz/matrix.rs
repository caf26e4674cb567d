//! The exhaustive input matrix of the 4-tier rules — every tier × every kind
//! of amount × limit set or not × normal or low trust — and the golden
//! decisions file (`golden/decisions.jsonl`) generated from it with the
//! native rules, the reference. Engines are compared on these inputs.

use super::{PolicyEngine, PolicyError, PolicyInput};
use crate::domain::{Capability, Tier, Trust, Verdict};
use crate::ids::{SessionId, TurnId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// The amount limit of the matrix's limited capabilities.
pub const MATRIX_LIMIT: f64 = 500.0;

/// Every kind of `args.amount`, by name: absent, not a number, negative,
/// below, equal to and above the limit, a fraction over it, and huge.
pub fn amounts() -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("absent", None),
        ("not a number", Some(json!("lots"))),
        ("negative", Some(json!(-5))),
        ("below", Some(json!(250))),
        ("equal", Some(json!(500))),
        ("above", Some(json!(501))),
        ("float", Some(json!(500.5))),
        ("huge", Some(json!(1e308))),
    ]
}

/// The matrix: 4 tiers × 8 amounts × 2 limits × 2 trusts = 128 inputs.
pub fn exhaustive() -> Vec<PolicyInput> {
    exhaustive_named().into_iter().map(|(_, input)| input).collect()
}

/// The matrix with a readable name for each input, as a decision diff
/// shows it: `matrix.tier1.limited, amount 501 (above), low trust`.
pub fn exhaustive_named() -> Vec<(String, PolicyInput)> {
    let mut inputs = Vec::new();
    for level in 0..=3u8 {
        for limit in [Some(MATRIX_LIMIT), None] {
            let suffix = if limit.is_some() { ".limited" } else { "" };
            let mut cap = Capability::new(&format!("matrix.tier{level}{suffix}"), Tier::from_level(level));
            cap.amount_limit = limit;
            let cap = Arc::new(cap);
            for (kind, amount) in amounts() {
                let described = match &amount {
                    None => "no amount".to_owned(),
                    Some(a) => format!("amount {a} ({kind})"),
                };
                let args = amount.map_or_else(|| json!({}), |a| json!({ "amount": a }));
                for trust in [Trust::Normal, Trust::Low] {
                    let input = PolicyInput::new(cap.clone(), args.clone(), trust)
                        .in_turn(SessionId("ses_golden".into()), TurnId("turn_golden".into()));
                    let trust = match trust {
                        Trust::Normal => "normal",
                        Trust::Low => "low",
                    };
                    inputs.push((format!("{}, {described}, {trust} trust", cap.name), input));
                }
            }
        }
    }
    inputs
}

/// The decision a golden line expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub decision: Verdict,
    pub tier: Tier,
}

/// One line of `golden/decisions.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    pub input: Value,
    pub expected: Expected,
}

/// The golden file's text: the matrix, decided by `reference`.
pub fn golden_text(reference: &dyn PolicyEngine) -> String {
    let mut text = String::new();
    for input in exhaustive() {
        let d = reference.decide(&input);
        let case = GoldenCase { input: input.document(), expected: Expected { decision: d.decision, tier: d.tier } };
        text.push_str(&serde_json::to_string(&case).expect("JSON values serialize"));
        text.push('\n');
    }
    text
}

/// Parses a golden file; a bad line is reported with its number.
pub fn parse_golden(text: &str) -> Result<Vec<GoldenCase>, PolicyError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| PolicyError::Bundle(format!("{}:{}: {e}", super::GOLDEN_PATH, i + 1)))
        })
        .collect()
}
