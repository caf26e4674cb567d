//! Authorization: what decides whether an action runs. `PolicyEngine` is
//! the one interface; `RegoPolicy` evaluates a bundle of Rego (`policies/`
//! by default, `data.warden.authz.decision`), `NativePolicy` is the
//! reference 4-tier rules in Rust. The engine in force lives in a
//! `PolicySlot` on the runtime (an `ArcSwap`, so it outlives actor restarts
//! and can be replaced while decisions run); decisions read it directly, in
//! parallel, on the caller's thread. No actor, no storage: the `PolicyStore`
//! actor (`policy.rs`) is what describes, and will replace, the slot's policy.

mod bundle;
pub mod gate;
pub mod matrix;
mod native;
mod rego;
pub mod suite;

pub use bundle::{Bundle, BundleSource, GOLDEN_PATH, MANIFEST_PATH, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES};
pub use native::{verdict_of, NativePolicy, NATIVE_POLICY_HASH};
pub use rego::{RegoPolicy, DECISION_RULE, MAX_CACHED_CAPABILITIES, POLICY_ERROR, POLICY_TIMEOUT};

use crate::domain::{Capability, Decision, PolicyRecord, Trust};
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
    /// The authenticated principal of the request, on a node with tokens.
    pub principal: Option<PolicyPrincipal>,
}

/// Who sent the request a decision is for: `input.principal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPrincipal {
    pub name: String,
    /// `agent`, `operator` or `admin`.
    pub role: String,
}

impl PolicyInput {
    pub fn new(capability: Arc<Capability>, args: Value, trust: Trust) -> Self {
        Self { capability, args, trust, session: None, turn: None, principal: None }
    }

    /// The same input, asked by `turn` of `session`.
    pub fn in_turn(self, session: SessionId, turn: TurnId) -> Self {
        Self { session: Some(session), turn: Some(turn), ..self }
    }

    /// The same input, sent by `principal` (none on a node without tokens).
    pub fn by(self, principal: Option<PolicyPrincipal>) -> Self {
        Self { principal, ..self }
    }

    /// The Rego input document (docs/policy.md): `{capability: {name, tier,
    /// amount_limit?}, args, session: {id?, trust}, turn?: {id},
    /// principal?: {name, role}}`.
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
        if let Some(p) = &self.principal {
            doc.insert("principal".into(), json!({ "name": p.name, "role": p.role }));
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
    pub engine: Arc<dyn PolicyEngine>,
    pub kind: EngineKind,
    /// The bundle the Rego engine runs (none for the native engine).
    pub bundle: Option<Bundle>,
    pub activated_at_ms: u64,
    /// Who activated it (`"config"` for the policy a node starts with).
    pub by: String,
    /// The cluster's activation it comes from (0: the node's configuration).
    pub generation: u64,
}

impl ActivePolicy {
    /// Compiles the configured policy; invalid Rego is an error.
    pub fn from_config(config: &PolicyConfig, now_ms: u64) -> Result<Self, PolicyError> {
        let (engine, bundle): (Arc<dyn PolicyEngine>, _) = match config.engine {
            EngineKind::Native => (Arc::new(NativePolicy), None),
            EngineKind::Rego => {
                (Arc::new(RegoPolicy::compile(&config.bundle, config.eval_timeout)?), Some(config.bundle.clone()))
            }
        };
        Ok(Self {
            engine,
            kind: config.engine,
            bundle,
            activated_at_ms: now_ms,
            by: "config".to_owned(),
            generation: 0,
        })
    }

    /// The policy of an activation the cluster applied (compiled by `compile`,
    /// which may hand back an engine it already has for that hash).
    pub fn from_record(
        record: &PolicyRecord,
        compile: impl FnOnce(&Bundle) -> Result<Arc<RegoPolicy>, PolicyError>,
    ) -> Result<Self, PolicyError> {
        let bundle = Bundle::from_files(record.files.clone(), BundleSource::Replicated)?;
        if bundle.hash() != record.hash {
            return Err(PolicyError::Bundle(format!(
                "the replicated bundle hashes to {}, not to its recorded {}",
                bundle.hash(),
                record.hash
            )));
        }
        let engine: Arc<dyn PolicyEngine> = compile(&bundle)?;
        Ok(Self {
            engine,
            kind: EngineKind::Rego,
            bundle: Some(bundle),
            activated_at_ms: record.activated_at_ms,
            by: record.by.clone(),
            generation: record.generation,
        })
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
            activated_at: self.activated_at_ms,
            by: self.by.clone(),
            generation: self.generation,
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
    /// When it became active here (ms since the epoch): the activation's
    /// time, or the node's start for its configured policy.
    pub activated_at: u64,
    pub by: String,
    /// The cluster activation it comes from (0: the node's configuration).
    pub generation: u64,
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

    /// The hash decisions carry now.
    pub fn hash(&self) -> String {
        self.active.load().engine.hash().to_owned()
    }

    /// Makes `policy` the active one unless the slot already holds a newer
    /// activation (two installers racing — the apply path and a start-up
    /// read — cannot move it backwards). True when it was installed.
    pub fn install(&self, policy: ActivePolicy) -> bool {
        let policy = Arc::new(policy);
        let previous =
            self.active.rcu(
                |current| {
                    if current.generation < policy.generation {
                        policy.clone()
                    } else {
                        current.clone()
                    }
                },
            );
        previous.generation < policy.generation
    }
}

/// Engines compiled for recent bundles, by hash, so that going back and
/// forth between two bundles (a rollback, then a push again) does not
/// recompile them.
pub struct EngineCache {
    eval_timeout: Duration,
    engines: parking_lot::Mutex<Vec<(String, Arc<RegoPolicy>)>>,
}

/// Compiled engines an `EngineCache` keeps.
pub const MAX_CACHED_ENGINES: usize = 4;

impl EngineCache {
    pub fn new(eval_timeout: Duration) -> Self {
        Self { eval_timeout, engines: parking_lot::Mutex::new(Vec::new()) }
    }

    /// Keeps an engine compiled elsewhere (by the gate) for its bundle's hash.
    pub fn keep(&self, engine: Arc<RegoPolicy>) {
        let mut engines = self.engines.lock();
        engines.retain(|(h, _)| h != engine.hash());
        engines.insert(0, (engine.hash().to_owned(), engine));
        engines.truncate(MAX_CACHED_ENGINES);
    }

    /// The engine for `bundle`, compiled now unless one is kept.
    pub fn compile(&self, bundle: &Bundle) -> Result<Arc<RegoPolicy>, PolicyError> {
        if let Some((_, engine)) = self.engines.lock().iter().find(|(h, _)| h == bundle.hash()) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(RegoPolicy::compile(bundle, self.eval_timeout)?);
        self.keep(engine.clone());
        Ok(engine)
    }

    pub fn eval_timeout(&self) -> Duration {
        self.eval_timeout
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
        assert!(doc.get("principal").is_none());
        let principal = PolicyPrincipal { name: "ci-bot".into(), role: "agent".into() };
        let doc = PolicyInput::new(Arc::new(Capability::new("x", Tier::Observe)), json!({}), Trust::Normal)
            .by(Some(principal))
            .document();
        assert_eq!(doc["principal"], json!({"name": "ci-bot", "role": "agent"}));
    }

    /// The engine's directly built input is the documented one, value for value.
    #[test]
    fn the_rego_input_equals_the_document() {
        let policy = RegoPolicy::compile(&Bundle::embedded(), DEFAULT_EVAL_TIMEOUT).unwrap();
        let principal = PolicyPrincipal { name: "ops".into(), role: "operator".into() };
        let mut inputs = matrix::exhaustive();
        inputs.push(inputs[3].clone().by(Some(principal)));
        let mut nested = inputs[5].clone();
        nested.args = json!({"amount": -1.25, "x": [1, "two", null, {"deep": true}], "big": 18446744073709551615u64});
        inputs.push(nested);
        for input in inputs {
            // Twice: the second time the capability comes from the cache.
            for _ in 0..2 {
                assert_eq!(policy.input_value(&input), rego::rego_value(&input.document()), "{input:?}");
                assert_eq!(policy.input_value(&input), regorus::Value::from(input.document()), "{input:?}");
            }
        }
    }
}
