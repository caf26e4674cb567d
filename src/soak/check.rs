//! The invariants a soak or chaos run must end with, checked from what the
//! cluster and the tool report, and a printable verdict:
//! - every acknowledged action exists and is terminal (none lost);
//! - no attempt reached the tool outside the action's record: a key has no
//!   more requests than its action has attempts, and every request for a key
//!   names that key's action;
//! - every succeeded tool action took effect exactly once;
//! - each capability's SLO held (p95 of successful attempt latency, and the
//!   share of failed attempts against the error budget).
//!
//! Takeovers are reported with their time from the kill that caused them.

use super::tool::ToolServer;
use super::workload::Submitted;
use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::BTreeMap;
use warden_actors::domain::{Capability, ExecutorSpec};

/// A node killed by the run, and when (ms since the epoch).
#[derive(Clone, Debug)]
pub struct Kill {
    pub node: String,
    pub at_ms: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SloResult {
    pub capability: String,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub p95_ms: Option<u64>,
    pub p95_target_ms: u64,
    pub error_ratio: f64,
    pub error_budget: f64,
    pub met: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub submitted: usize,
    pub acknowledged: usize,
    pub unacknowledged: usize,
    pub by_state: BTreeMap<String, u64>,
    /// Acknowledged but missing or not terminal at the end.
    pub lost: Vec<String>,
    /// Keys whose tool requests exceed their action's attempts, or name another action.
    pub unrecorded_executions: Vec<String>,
    /// Succeeded tool actions whose effect the tool did not apply exactly once.
    pub effect_violations: Vec<String>,
    /// Requests the tool answered from its dedup (re-executions after a takeover).
    pub deduplicated_requests: u64,
    pub takeovers: u64,
    pub takeovers_by_reason: BTreeMap<String, u64>,
    /// Time from a kill to each takeover it caused, in ms.
    pub takeover_ms: Vec<u64>,
    pub slo: Vec<SloResult>,
    pub kills: usize,
    /// Correlation graphs checked (`graphs::check`), and what was wrong with them.
    pub graphs_checked: usize,
    pub graph_violations: Vec<String>,
    /// Each node's resident set over the run.
    pub memory: Vec<super::memory::NodeMemory>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.unrecorded_executions.is_empty()
            && self.effect_violations.is_empty()
            && self.slo.iter().all(|s| s.met)
            && self.graph_violations.is_empty()
    }

    /// The failed invariants, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        if !self.lost.is_empty() {
            out.push(format!("{} acknowledged actions lost or not terminal: {}", self.lost.len(), sample(&self.lost)));
        }
        if !self.unrecorded_executions.is_empty() {
            let n = self.unrecorded_executions.len();
            out.push(format!("{n} keys executed outside their record: {}", sample(&self.unrecorded_executions)));
        }
        if !self.effect_violations.is_empty() {
            let n = self.effect_violations.len();
            out.push(format!("{n} succeeded actions without exactly one effect: {}", sample(&self.effect_violations)));
        }
        if !self.graph_violations.is_empty() {
            let n = self.graph_violations.len();
            out.push(format!("{n} correlation graphs incomplete: {}", sample(&self.graph_violations)));
        }
        for s in self.slo.iter().filter(|s| !s.met) {
            out.push(format!(
                "SLO of {} missed: p95 {:?} ms (target {}), errors {:.4} (budget {})",
                s.capability, s.p95_ms, s.p95_target_ms, s.error_ratio, s.error_budget
            ));
        }
        out
    }

    /// (median, max) of the takeover times.
    pub fn takeover_summary(&self) -> Option<(u64, u64)> {
        let mut t = self.takeover_ms.clone();
        t.sort_unstable();
        Some((*t.get(t.len() / 2)?, *t.last()?))
    }

    pub fn print(&self) {
        println!("\nsoak report");
        println!("{:-<52}", "");
        let row = |k: &str, v: String| println!("{k:<34}{v:>18}");
        row("actions submitted", self.submitted.to_string());
        row("acknowledged", self.acknowledged.to_string());
        row("not acknowledged (refused)", self.unacknowledged.to_string());
        for (state, n) in &self.by_state {
            row(&format!("  {state}"), n.to_string());
        }
        row("lost", self.lost.len().to_string());
        row("executions outside the record", self.unrecorded_executions.len().to_string());
        row("duplicate effects", self.effect_violations.len().to_string());
        row("re-executions deduped by key", self.deduplicated_requests.to_string());
        row("correlation graphs checked", self.graphs_checked.to_string());
        row("graphs incomplete", self.graph_violations.len().to_string());
        row("nodes killed", self.kills.to_string());
        row("takeovers", self.takeovers.to_string());
        for (reason, n) in &self.takeovers_by_reason {
            row(&format!("  {reason}"), n.to_string());
        }
        if let Some((median, max)) = self.takeover_summary() {
            row("takeover after kill (median/max)", format!("{median} / {max} ms"));
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        for m in &self.memory {
            let (first, peak, last) = (mib(m.first), mib(m.peak), mib(m.last));
            row(&format!("RSS {} (first/peak/last)", m.node), format!("{first:.0}/{peak:.0}/{last:.0} MiB"));
        }
        for s in &self.slo {
            let p95 = s.p95_ms.map_or("-".into(), |p| p.to_string());
            row(
                &format!("SLO {}", s.capability),
                format!(
                    "{} p95 {p95}/{} ms err {:.3}",
                    if s.met { "met" } else { "MISSED" },
                    s.p95_target_ms,
                    s.error_ratio
                ),
            );
        }
        println!("{:-<52}", "");
        if self.passed() {
            println!("PASS");
        } else {
            for f in self.failures() {
                println!("FAIL: {f}");
            }
        }
    }
}

/// What a run leaves to be checked.
pub struct Evidence<'a> {
    /// Actions the run meant to submit.
    pub requested: usize,
    pub submitted: &'a Submitted,
    /// The final view of each acknowledged action, in `submitted.acks` order.
    pub views: &'a [Option<Value>],
    pub tool: &'a ToolServer,
    pub capabilities: &'a [Capability],
    /// The `action.takeover` events of the run.
    pub takeovers: &'a [Value],
    pub kills: &'a [Kill],
}

/// Checks the invariants.
pub fn check(e: &Evidence<'_>) -> Report {
    let (acks, capabilities, kills) = (&e.submitted.acks, e.capabilities, e.kills);
    let mut report = Report {
        submitted: e.requested,
        acknowledged: acks.len(),
        unacknowledged: e.submitted.unacknowledged.len(),
        kills: kills.len(),
        ..Report::default()
    };
    let tool_caps: Vec<&str> = capabilities
        .iter()
        .filter(|c| matches!(c.executor, ExecutorSpec::Http { .. }))
        .map(|c| c.name.as_str())
        .collect();
    let mut latencies: BTreeMap<String, (Histogram<u64>, u64, u64)> = BTreeMap::new();
    let records = e.tool.records();
    for (ack, view) in acks.iter().zip(e.views) {
        let state = view.as_ref().and_then(|v| v["state"].as_str()).unwrap_or("missing");
        *report.by_state.entry(state.to_owned()).or_default() += 1;
        if matches!(state, "missing" | "pending" | "running" | "awaiting_confirmation") {
            report.lost.push(format!("{} ({state})", ack.action_id));
            continue;
        }
        let view = view.as_ref().expect("a terminal action has a view");
        let attempts = view["attempts"].as_array().cloned().unwrap_or_default();
        let entry = latencies
            .entry(ack.capability.clone())
            .or_insert_with(|| (Histogram::new(3).expect("a valid histogram"), 0, 0));
        for a in &attempts {
            match a["outcome"]["outcome"].as_str() {
                Some("succeeded") => {
                    entry.1 += 1;
                    let _ = entry.0.record(a["latency_ms"].as_u64().unwrap_or(0));
                }
                Some("retryable" | "permanent" | "breaker_open") => {
                    entry.1 += 1;
                    entry.2 += 1;
                }
                _ => {}
            }
        }
        if !tool_caps.contains(&ack.capability.as_str()) {
            continue;
        }
        let record = records.get(&ack.key).cloned().unwrap_or_default();
        if record.requests as usize > attempts.len() || record.actions.iter().any(|a| *a != ack.action_id) {
            report.unrecorded_executions.push(format!(
                "{}: {} requests for {} attempts, actions {:?}",
                ack.key,
                record.requests,
                attempts.len(),
                record.actions
            ));
        }
        if state == "succeeded" && record.effects != 1 {
            report.effect_violations.push(format!("{}: {} effects", ack.key, record.effects));
        }
        report.deduplicated_requests += u64::from(record.deduplicated);
    }
    judge_slos(&mut report, capabilities, &latencies);
    count_takeovers(&mut report, e.takeovers, kills);
    report
}

/// Per capability: p95 of successful attempts and the failed share, against its SLO.
fn judge_slos(
    report: &mut Report,
    capabilities: &[Capability],
    latencies: &BTreeMap<String, (Histogram<u64>, u64, u64)>,
) {
    for cap in capabilities {
        let Some((hist, attempts, failed)) = latencies.get(&cap.name) else { continue };
        let p95 = (!hist.is_empty()).then(|| hist.value_at_quantile(0.95));
        let error_ratio = if *attempts == 0 { 0.0 } else { *failed as f64 / *attempts as f64 };
        report.slo.push(SloResult {
            capability: cap.name.clone(),
            attempts: *attempts,
            failed_attempts: *failed,
            p95_ms: p95,
            p95_target_ms: cap.slo.p95_ms,
            error_ratio,
            error_budget: cap.slo.error_budget,
            met: p95.is_none_or(|p| p <= cap.slo.p95_ms) && error_ratio <= cap.slo.error_budget,
        });
    }
}

/// Takeovers by reason, and how long after the kill of its node each came.
fn count_takeovers(report: &mut Report, takeovers: &[Value], kills: &[Kill]) {
    for t in takeovers {
        report.takeovers += 1;
        let reason = t["data"]["reason"].as_str().unwrap_or("unknown").to_owned();
        *report.takeovers_by_reason.entry(reason).or_default() += 1;
        let (from, ts) = (t["data"]["from"].as_str().unwrap_or_default(), t["ts"].as_u64().unwrap_or(0));
        let kill = kills.iter().filter(|k| k.node == from && k.at_ms <= ts).map(|k| k.at_ms).max();
        if let Some(at) = kill {
            report.takeover_ms.push(ts - at);
        }
    }
}
