//! Authorization: what decides whether an action runs. `PolicyEngine` is
//! the one interface; `RegoPolicy` evaluates a bundle of Rego (`policies/`
//! by default, `data.warden.authz.decision`), `NativePolicy` is the
//! reference 4-tier rules in Rust. The engine in force lives in a
//! `PolicySlot` on the runtime (an `ArcSwap`, so it outlives actor restarts
//! and can be replaced while decisions run); decisions read it directly, in
//! parallel, on the caller's thread. No actor, no storage: the `PolicyStore`
//! actor (`policy.rs`) is what describes, and will replace, the slot's policy.

mod bundle;
pub mod matrix;
mod native;
mod rego;
pub mod suite;

pub use bundle::{Bundle, BundleSource, GOLDEN_PATH, MANIFEST_PATH, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES};
pub use native::{verdict_of, NativePolicy, NATIVE_POLICY_HASH};
pub use rego::{RegoPolicy, DECISION_RULE, POLICY_ERROR, POLICY_TIMEOUT};

use crate::domain::{Capability, Decision, Trust};
use crate::ids::{SessionId, TurnId};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long one Rego evaluation may run before it is abandoned and the
/// action denied (`policy_timeout`).
pub const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_millis(10);

/// Everything a decision depends on.
#[derive(Clone, Debug)]
pub struct PolicyInput {
    pub capability: Arc<Capability>,
    pub args: Value,
    pub trust: Trust,
    /// The session and turn asking, when the decision is for one.
    pub session: Option<SessionId>,
    pub turn: Option<TurnId>,
}

impl PolicyInput {
    pub fn new(capability: Arc<Capability>, args: Value, trust: Trust) -> Self {
        Self { capability, args, trust, session: None, turn: None }
    }

    /// The same input, asked by `turn` of `session`.
    pub fn in_turn(self, session: SessionId, turn: TurnId) -> Self {
        Self { session: Some(session), turn: Some(turn), ..self }
    }

    /// The Rego input document (docs/policy.md): `{capability: {name, tier,
    /// amount_limit?}, args, session: {id?, trust}, turn?: {id}}`.
    pub fn document(&self) -> Value {
        let cap = &self.capability;
        let mut capability = Map::new();
        capability.insert("name".into(), json!(cap.name));
        capability.insert("tier".into(), json!(cap.tier.level()));
        if let Some(limit) = cap.amount_limit {
            capability.insert("amount_limit".into(), number(limit));
        }
        let mut session = Map::new();
        if let Some(id) = &self.session {
            session.insert("id".into(), json!(id));
        }
        session.insert("trust".into(), json!(self.trust));
        let mut doc = Map::new();
        doc.insert("capability".into(), Value::Object(capability));
        doc.insert("args".into(), self.args.clone());
        doc.insert("session".into(), Value::Object(session));
        if let Some(id) = &self.turn {
            doc.insert("turn".into(), json!({ "id": id }));
        }
        Value::Object(doc)
    }
}

/// A whole number as an integer (`500`, as the config wrote it), else as a float.
fn number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact in f64
    if x.fract() == 0.0 && x.abs() < EXACT {
        json!(x as i64)
    } else {
        json!(x)
    }
}

pub trait PolicyEngine: Send + Sync {
    /// Never fails: an engine that cannot decide denies, saying why.
    fn decide(&self, input: &PolicyInput) -> Decision;
    /// Identifies the policy: every decision carries it.
    fn hash(&self) -> &str;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The bundle's files cannot be read or are malformed.
    #[error("policy bundle: {0}")]
    Bundle(String),
    /// The Rego does not compile: one `file:line:col: message` per problem.
    #[error("policy does not compile:\n{0}")]
    Compile(String),
}

impl From<PolicyError> for crate::WardenError {
    fn from(e: PolicyError) -> Self {
        crate::WardenError::PolicyRejected(e.to_string())
    }
}

/// Which engine decides (node config `policy_engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// The bundle's Rego, evaluated by regorus.
    #[default]
    Rego,
    /// The 4-tier rules compiled into warden (the bundle is not used).
    Native,
}

/// The policy a node starts with.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub engine: EngineKind,
    /// `policies_dir`, or the bundle embedded in the binary.
    pub bundle: Bundle,
    /// Longest one Rego evaluation may run (`policy_timeout_ms`).
    pub eval_timeout: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { engine: EngineKind::Rego, bundle: Bundle::embedded(), eval_timeout: DEFAULT_EVAL_TIMEOUT }
    }
}

/// The policy in force, and where it came from.
pub struct ActivePolicy {
    pub engine: Box<dyn PolicyEngine>,
    pub kind: EngineKind,
    /// The bundle the Rego engine runs (none for the native engine).
    pub bundle: Option<Bundle>,
    pub activated_at_ms: u64,
    /// Who activated it (`"config"` for the policy a node starts with).
    pub by: String,
}

impl ActivePolicy {
    /// Compiles the configured policy; invalid Rego is an error.
    pub fn from_config(config: &PolicyConfig, now_ms: u64) -> Result<Self, PolicyError> {
        let (engine, bundle): (Box<dyn PolicyEngine>, _) = match config.engine {
            EngineKind::Native => (Box::new(NativePolicy), None),
            EngineKind::Rego => {
                (Box::new(RegoPolicy::compile(&config.bundle, config.eval_timeout)?), Some(config.bundle.clone()))
            }
        };
        Ok(Self { engine, kind: config.engine, bundle, activated_at_ms: now_ms, by: "config".to_owned() })
    }

    /// What `GET /v1/policies` shows of it.
    pub fn summary(&self) -> PolicySummary {
        let bundle = self.bundle.as_ref();
        PolicySummary {
            engine: self.kind,
            hash: self.engine.hash().to_owned(),
            revision: bundle.map(|b| b.revision().to_owned()),
            roots: bundle.map_or_else(Vec::new, |b| b.roots().to_vec()),
            source: bundle.map(|b| b.source().to_string()),
            files: bundle.map_or_else(Vec::new, |b| {
                b.files().iter().map(|(path, text)| BundleFile { path: path.clone(), bytes: text.len() }).collect()
            }),
            activated_at_ms: self.activated_at_ms,
            by: self.by.clone(),
        }
    }
}

/// The active policy as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub engine: EngineKind,
    pub hash: String,
    pub revision: Option<String>,
    pub roots: Vec<String>,
    /// `embedded`, or the directory the bundle was read from.
    pub source: Option<String>,
    pub files: Vec<BundleFile>,
    pub activated_at_ms: u64,
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub path: String,
    pub bytes: usize,
}

/// Where the active policy lives: read by every decision without a lock or
/// a message; replaced whole, so a decision under way finishes on the
/// engine it started with.
pub struct PolicySlot {
    active: ArcSwap<ActivePolicy>,
}

impl PolicySlot {
    pub fn new(active: ActivePolicy) -> Self {
        Self { active: ArcSwap::from_pointee(active) }
    }

    pub fn decide(&self, input: &PolicyInput) -> Decision {
        self.active.load().engine.decide(input)
    }

    pub fn active(&self) -> Arc<ActivePolicy> {
        self.active.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tier;

    #[test]
    fn the_input_document_has_the_documented_shape() {
        let mut cap = Capability::new("payments.send", Tier::Reversible);
        cap.amount_limit = Some(500.0);
        let input = PolicyInput::new(Arc::new(cap), json!({"amount": 12.5, "to": "x"}), Trust::Low)
            .in_turn(SessionId("ses_1".into()), TurnId("turn_1".into()));
        assert_eq!(
            input.document(),
            json!({
                "capability": {"name": "payments.send", "tier": 1, "amount_limit": 500},
                "args": {"amount": 12.5, "to": "x"},
                "session": {"id": "ses_1", "trust": "low"},
                "turn": {"id": "turn_1"},
            })
        );
        let mut odd = Capability::new("x", Tier::Observe);
        odd.amount_limit = Some(0.5);
        let doc = PolicyInput::new(Arc::new(odd), json!({}), Trust::Normal).document();
        assert_eq!(doc["capability"]["amount_limit"], json!(0.5));
        assert_eq!(doc["session"], json!({"trust": "normal"}));
        assert!(doc.get("turn").is_none());
    }
}
