//! `RegoPolicy`: a bundle's `data.warden.authz.decision`, evaluated by
//! regorus. The bundle is compiled once — checked by regorus's interpreter,
//! then compiled to bytecode for its virtual machine (RVM) — and each
//! decision borrows a loaded VM from a small pool (a VM runs one input at a
//! time), so decisions run in parallel on their callers' threads and nothing
//! is rebuilt per request. Every way an evaluation can fail — no result, an
//! error, a result of the wrong shape, running over the time limit — denies.

use super::{Bundle, PolicyEngine, PolicyError, PolicyInput};
use crate::domain::{Capability, Decision, Tier, Trust, Verdict};
use parking_lot::{Mutex, RwLock};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The rule every bundle must define.
pub const DECISION_RULE: &str = "data.warden.authz.decision";
/// First reason of a decision the policy could not make.
pub const POLICY_ERROR: &str = "policy_error";
/// First reason of a decision abandoned at the time limit.
pub const POLICY_TIMEOUT: &str = "policy_timeout";
/// Loaded VMs kept between decisions; under more concurrency, extra ones
/// are made and dropped afterwards.
pub const MAX_IDLE_VMS: usize = 64;
/// Bytecode instructions one evaluation may run: far above any sane policy,
/// so the time limit is what stops a slow one (the VM's default is 25,000).
pub const MAX_INSTRUCTIONS: usize = 100_000_000;
/// Evaluations of one decision that may hit the time limit before it is
/// denied: the limit is wall-clock time, so a second run tells a policy
/// that is too slow from a thread that was descheduled mid-evaluation.
pub const TIMEOUT_ATTEMPTS: u32 = 2;
/// Units of interpreter work between two reads of the clock by the timer.
const TIMER_CHECK_INTERVAL: u32 = 16;
/// Capability sub-documents kept ready per policy (the catalog's, and
/// inline ones asked by `/v1/policies/decide` until the cache is full).
pub const MAX_CACHED_CAPABILITIES: usize = 1024;

pub struct RegoPolicy {
    program: Arc<Program>,
    /// The bundle's data documents, merged.
    data: Value,
    timer: ExecutionTimerConfig,
    idle: Mutex<Vec<RegoVM>>,
    hash: String,
    /// The input document's keys and constant values, made once.
    keys: Keys,
    /// `input.capability` per capability, made at its first decision.
    capabilities: RwLock<HashMap<String, (Arc<Capability>, Value)>>,
}

/// The strings of the input document and of the result, as regorus values,
/// made once per policy so that building an input allocates only what varies.
struct Keys {
    capability: Value,
    name: Value,
    tier: Value,
    amount_limit: Value,
    args: Value,
    session: Value,
    id: Value,
    trust: Value,
    turn: Value,
    principal: Value,
    role: Value,
    decision: Value,
    reasons: Value,
    normal: Value,
    low: Value,
}

impl Keys {
    fn new() -> Self {
        let s = |x: &str| Value::String(x.into());
        Self {
            capability: s("capability"),
            name: s("name"),
            tier: s("tier"),
            amount_limit: s("amount_limit"),
            args: s("args"),
            session: s("session"),
            id: s("id"),
            trust: s("trust"),
            turn: s("turn"),
            principal: s("principal"),
            role: s("role"),
            decision: s("decision"),
            reasons: s("reasons"),
            normal: s("normal"),
            low: s("low"),
        }
    }
}

/// A JSON value as regorus holds it — what `Value::from(serde_json::Value)`
/// gives, without the detour through serde's deserializer.
pub(crate) fn rego_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(i), _) => Value::from(i),
            (None, None, Some(f)) => Value::from(f),
            (None, None, None) => Value::Null,
        },
        serde_json::Value::String(s) => Value::String(s.as_str().into()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(rego_value).collect::<Vec<_>>()),
        serde_json::Value::Object(map) => Value::from(
            map.iter().map(|(k, v)| (Value::String(k.as_str().into()), rego_value(v))).collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// An engine holding the bundle's modules and data, not yet prepared.
/// Reports every module that does not parse, one `file:line:col: message` each.
pub(crate) fn load_engine(bundle: &Bundle) -> Result<Engine, PolicyError> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    let mut problems = Vec::new();
    for (path, text) in bundle.modules() {
        if let Err(e) = engine.add_policy(path.to_owned(), text.to_owned()) {
            problems.push(located(&e.to_string()));
        }
    }
    for (root, text) in bundle.data_documents() {
        let prefix: String = root.iter().map(|r| format!("{r}/")).collect();
        let mut value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{prefix}data.json:{}:{}: {e}", e.line(), e.column()));
                continue;
            }
        };
        // OPA's bundle rule: `a/b/data.json` is the document at `data.a.b`.
        for key in root.iter().rev() {
            value = serde_json::json!({ *key: value });
        }
        if let Err(e) = engine.add_data(Value::from(value)) {
            problems.push(format!("{prefix}data.json: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(engine)
    } else {
        Err(PolicyError::Compile(problems.join("\n")))
    }
}

/// regorus reports a problem as `--> file:line:col`, the source excerpt,
/// then `error: message`; this puts it the way compilers do,
/// `file:line:col: message`, with the excerpt below.
fn located(raw: &str) -> String {
    let location = raw.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let message = raw.lines().rev().find_map(|l| l.trim().strip_prefix("error: "));
    match (location, message) {
        (Some(location), Some(message)) => {
            let excerpt: Vec<&str> = raw.lines().filter(|l| l.contains('|')).collect();
            format!("{location}: {message}\n{}", excerpt.join("\n"))
        }
        _ => raw.trim().to_owned(),
    }
}

impl RegoPolicy {
    /// Compiles `bundle` and checks it defines the decision rule.
    pub fn compile(bundle: &Bundle, eval_timeout: Duration) -> Result<Self, PolicyError> {
        let mut engine = load_engine(bundle)?;
        let compile_error = |e: &dyn std::fmt::Display| PolicyError::Compile(located(&e.to_string()));
        // Analyses the modules (what `add_policy` does not check) and
        // resolves the entry point, without evaluating anything.
        let compiled = engine.compile_with_entrypoint(&DECISION_RULE.into()).map_err(|e| compile_error(&e))?;
        let program = Compiler::compile_from_policy(&compiled, &[DECISION_RULE]).map_err(|e| compile_error(&e))?;
        let timer = ExecutionTimerConfig {
            limit: eval_timeout,
            check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).expect("not zero"),
        };
        let policy = Self {
            program,
            data: engine.get_data(),
            timer,
            idle: Mutex::new(Vec::new()),
            hash: bundle.hash().to_owned(),
            keys: Keys::new(),
            capabilities: RwLock::new(HashMap::new()),
        };
        let vm = policy.load_vm().map_err(|e| PolicyError::Compile(format!("data: {e}")))?;
        policy.idle.lock().push(vm);
        Ok(policy)
    }

    /// A VM with the program, the data and the limits.
    fn load_vm(&self) -> Result<RegoVM, VmError> {
        let mut vm = RegoVM::new();
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone())?;
        vm.set_execution_timer_config(Some(self.timer));
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        Ok(vm)
    }

    /// The decision for an input document as the policy sees it.
    pub fn decide_document(&self, document: serde_json::Value) -> Decision {
        self.decide_value(rego_value(&document))
    }

    /// The input document of docs/policy.md as a regorus value, equal to
    /// `rego_value(&input.document())`, built directly: the capability's
    /// part is made once per capability and shared.
    pub fn input_value(&self, input: &PolicyInput) -> Value {
        let k = &self.keys;
        let mut session = BTreeMap::new();
        if let Some(id) = &input.session {
            session.insert(k.id.clone(), Value::String(id.as_str().into()));
        }
        let trust = match input.trust {
            Trust::Normal => k.normal.clone(),
            Trust::Low => k.low.clone(),
        };
        session.insert(k.trust.clone(), trust);
        let mut doc = BTreeMap::new();
        doc.insert(k.capability.clone(), self.capability_value(&input.capability));
        doc.insert(k.args.clone(), rego_value(&input.args));
        doc.insert(k.session.clone(), Value::from(session));
        if let Some(id) = &input.turn {
            let turn = BTreeMap::from([(k.id.clone(), Value::String(id.as_str().into()))]);
            doc.insert(k.turn.clone(), Value::from(turn));
        }
        if let Some(p) = &input.principal {
            let principal = BTreeMap::from([
                (k.name.clone(), Value::String(p.name.as_str().into())),
                (k.role.clone(), Value::String(p.role.as_str().into())),
            ]);
            doc.insert(k.principal.clone(), Value::from(principal));
        }
        Value::from(doc)
    }

    /// `input.capability` for `cap`, from the cache when the same
    /// capability (same tier and limit) was seen before.
    fn capability_value(&self, cap: &Arc<Capability>) -> Value {
        let same = |c: &Capability| {
            c.tier == cap.tier && c.amount_limit.map(f64::to_bits) == cap.amount_limit.map(f64::to_bits)
        };
        if let Some((known, value)) = self.capabilities.read().get(&cap.name) {
            if Arc::ptr_eq(known, cap) || same(known) {
                return value.clone();
            }
        }
        let k = &self.keys;
        let mut doc = BTreeMap::new();
        doc.insert(k.name.clone(), Value::String(cap.name.as_str().into()));
        doc.insert(k.tier.clone(), Value::from(u64::from(cap.tier.level())));
        if let Some(limit) = cap.amount_limit {
            doc.insert(k.amount_limit.clone(), rego_value(&super::number(limit)));
        }
        let value = Value::from(doc);
        let mut cache = self.capabilities.write();
        if cache.len() < MAX_CACHED_CAPABILITIES || cache.contains_key(&cap.name) {
            cache.insert(cap.name.clone(), (cap.clone(), value.clone()));
        }
        value
    }

    /// The decision for an input already in regorus's form.
    pub fn decide_value(&self, input: Value) -> Decision {
        let mut attempt = 1;
        loop {
            match self.evaluate(input.clone()) {
                Ok(value) => return self.shape(value),
                Err(e @ VmError::TimeLimitExceeded { .. }) if attempt >= TIMEOUT_ATTEMPTS => {
                    return self.deny(POLICY_TIMEOUT, format!("{DECISION_RULE}: {e}"))
                }
                Err(VmError::TimeLimitExceeded { .. }) => attempt += 1,
                Err(e) => return self.deny(POLICY_ERROR, format!("{DECISION_RULE}: {e}")),
            }
        }
    }

    /// One evaluation of the decision rule on a VM from the pool.
    fn evaluate(&self, input: Value) -> Result<Value, VmError> {
        let pooled = self.idle.lock().pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => self.load_vm()?,
        };
        vm.set_input(input);
        let result = vm.execute();
        // A VM that failed mid-evaluation is dropped, not reused.
        if result.is_ok() {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE_VMS {
                idle.push(vm);
            }
        }
        result
    }

    fn shape(&self, value: Value) -> Decision {
        if value == Value::Undefined {
            return self.deny(POLICY_ERROR, format!("{DECISION_RULE} is undefined for this input"));
        }
        match self.read_decision(&value) {
            Ok((decision, tier, reasons)) => Decision { decision, tier, reasons, policy_hash: self.hash.clone() },
            Err(e) => self.deny(POLICY_ERROR, format!("{DECISION_RULE} has the wrong shape ({e}): {value}")),
        }
    }

    /// `{decision, tier, reasons}` and nothing else, read from the result as it is.
    fn read_decision(&self, value: &Value) -> Result<(Verdict, Tier, Vec<String>), String> {
        let k = &self.keys;
        let Value::Object(fields) = value else { return Err("not an object".into()) };
        if fields.len() != 3 {
            return Err("expected exactly `decision`, `tier` and `reasons`".into());
        }
        let field = |key: &Value, name: &str| fields.get(key).ok_or_else(|| format!("missing `{name}`"));
        let decision = match field(&k.decision, "decision")? {
            Value::String(s) => match s.as_ref() {
                "allow" => Verdict::Allow,
                "confirm" => Verdict::Confirm,
                "deny" => Verdict::Deny,
                other => return Err(format!("unknown decision {other:?}")),
            },
            _ => return Err("`decision` is not a string".into()),
        };
        let tier = match field(&k.tier, "tier")? {
            Value::Number(n) => match n.as_u64() {
                Some(level @ 0..=3) => Tier::from_level(level as u8),
                _ => return Err("`tier` must be 0..=3".into()),
            },
            _ => return Err("`tier` is not a number".into()),
        };
        let reasons = match field(&k.reasons, "reasons")? {
            Value::Array(items) => items
                .iter()
                .map(|r| match r {
                    Value::String(s) => Ok(s.to_string()),
                    _ => Err("a reason is not a string".to_owned()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("`reasons` is not an array".into()),
        };
        Ok((decision, tier, reasons))
    }

    /// Fail closed: deny at the highest tier, `code` first among the reasons.
    fn deny(&self, code: &str, detail: String) -> Decision {
        tracing::warn!(code, %detail, "policy could not decide; denying");
        Decision {
            decision: Verdict::Deny,
            tier: Tier::Forbidden,
            reasons: vec![code.to_owned(), detail],
            policy_hash: self.hash.clone(),
        }
    }
}

impl PolicyEngine for RegoPolicy {
    fn decide(&self, input: &PolicyInput) -> Decision {
        self.decide_value(self.input_value(input))
    }

    fn hash(&self) -> &str {
        &self.hash
    }
}
