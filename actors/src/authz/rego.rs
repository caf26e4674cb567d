//! `RegoPolicy`: a bundle's `data.warden.authz.decision`, evaluated by
//! regorus. The bundle is compiled once — checked by regorus's interpreter,
//! then compiled to bytecode for its virtual machine (RVM) — and each
//! decision borrows a loaded VM from a small pool (a VM runs one input at a
//! time), so decisions run in parallel on their callers' threads and nothing
//! is rebuilt per request. Every way an evaluation can fail — no result, an
//! error, a result of the wrong shape, running over the time limit — denies.

use super::{Bundle, PolicyEngine, PolicyError, PolicyInput};
use crate::domain::{Decision, Tier, Verdict};
use parking_lot::Mutex;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
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

pub struct RegoPolicy {
    program: Arc<Program>,
    /// The bundle's data documents, merged.
    data: Value,
    timer: ExecutionTimerConfig,
    idle: Mutex<Vec<RegoVM>>,
    hash: String,
}

/// The result the decision rule must produce.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RegoDecision {
    decision: Verdict,
    tier: Tier,
    reasons: Vec<String>,
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
        let input = Value::from(document);
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
        let parsed = serde_json::to_value(&value).and_then(serde_json::from_value::<RegoDecision>);
        match parsed {
            Ok(d) => {
                Decision { decision: d.decision, tier: d.tier, reasons: d.reasons, policy_hash: self.hash.clone() }
            }
            Err(e) => self.deny(POLICY_ERROR, format!("{DECISION_RULE} has the wrong shape ({e}): {value}")),
        }
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
        self.decide_document(input.document())
    }

    fn hash(&self) -> &str {
        &self.hash
    }
}
