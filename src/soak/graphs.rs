//! The run's correlation graphs: for up to `GRAPHS_CHECKED` correlations of
//! the run's actions (spread over the run), every event on the timeline
//! carrying the correlation id is in `GET /v1/correlations/{cid}/graph`, and
//! every node of the graph is reachable from its root, the turn's
//! `turn.opened`, along its edges.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// How many correlations a run checks at most.
pub const GRAPHS_CHECKED: usize = 100;

/// Every event of a node's timeline, paged through its `next` cursor.
async fn all_events(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{base}/v1/timeline?limit=10000{cursor}");
        let page: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return Ok(out);
        }
        out.extend(events);
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(out),
        }
    }
}

/// What is wrong with `graph` for correlation `cid`, whose events on the
/// timeline are `seqs`; `None` if nothing.
pub fn judge(cid: &str, seqs: &BTreeSet<u64>, graph: &Value) -> Option<String> {
    let nodes: HashSet<u64> = graph["nodes"].as_array()?.iter().filter_map(|n| n["seq"].as_u64()).collect();
    let missing: Vec<&u64> = seqs.iter().filter(|s| !nodes.contains(s)).collect();
    if !missing.is_empty() {
        return Some(format!("{cid}: events {missing:?} are not in its graph"));
    }
    let Some(root) = graph["root"].as_u64() else { return Some(format!("{cid}: no root")) };
    let root_kind = graph["nodes"].as_array()?.iter().find(|n| n["seq"] == root).map(|n| n["kind"].clone());
    if root_kind != Some(Value::from("turn.opened")) {
        return Some(format!("{cid}: the root {root} is {root_kind:?}, not turn.opened"));
    }
    let mut children: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in graph["edges"].as_array()? {
        if let (Some(from), Some(to)) = (e["from"].as_u64(), e["to"].as_u64()) {
            children.entry(from).or_default().push(to);
        }
    }
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(seq) = stack.pop() {
        if seen.insert(seq) {
            stack.extend(children.get(&seq).into_iter().flatten());
        }
    }
    let unreached: Vec<&u64> = nodes.iter().filter(|s| !seen.contains(s)).collect();
    (!unreached.is_empty()).then(|| format!("{cid}: events {unreached:?} are not connected to the root"))
}

/// Checks the graphs of up to `GRAPHS_CHECKED` correlations of `views` (the
/// run's final action views) on node `base`: how many it checked, and what
/// was wrong.
pub async fn check(base: &str, views: &[Option<Value>]) -> anyhow::Result<(usize, Vec<String>)> {
    let http = crate::auth::client(Duration::from_secs(10), None, None)?;
    let mut cids: Vec<String> =
        views.iter().flatten().filter_map(|v| v["correlation_id"].as_str().map(str::to_owned)).collect();
    cids.sort();
    cids.dedup();
    let step = cids.len().div_ceil(GRAPHS_CHECKED).max(1);
    let chosen: Vec<&String> = cids.iter().step_by(step).take(GRAPHS_CHECKED).collect();
    let events = all_events(&http, base).await?;
    let mut by_cid: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for e in &events {
        if let (Some(cid), Some(seq)) = (e["correlation_id"].as_str(), e["seq"].as_u64()) {
            by_cid.entry(cid).or_default().insert(seq);
        }
    }
    let mut violations = Vec::new();
    for cid in &chosen {
        let url = format!("{base}/v1/correlations/{cid}/graph");
        let graph: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        let seqs = by_cid.get(cid.as_str()).cloned().unwrap_or_default();
        if seqs.is_empty() {
            violations.push(format!("{cid}: no event on the timeline"));
        } else if let Some(v) = judge(cid, &seqs, &graph) {
            violations.push(v);
        }
    }
    Ok((chosen.len(), violations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(edges: &[(u64, u64)]) -> Value {
        let nodes: Vec<Value> = [(1, "turn.opened"), (2, "action.submitted"), (3, "policy.decided")]
            .iter()
            .map(|(seq, kind)| json!({"seq": seq, "kind": kind}))
            .collect();
        let edges: Vec<Value> = edges.iter().map(|(f, t)| json!({"from": f, "to": t, "kind": "caused"})).collect();
        json!({"root": 1, "nodes": nodes, "edges": edges})
    }

    #[test]
    fn a_graph_passes_only_with_every_event_and_every_node_reachable_from_the_root() {
        let seqs: BTreeSet<u64> = [1, 2, 3].into();
        assert_eq!(judge("c", &seqs, &graph(&[(1, 2), (2, 3)])), None);
        let cut = judge("c", &seqs, &graph(&[(1, 2)])).unwrap();
        assert!(cut.contains("[3] are not connected"), "{cut}");
        let more: BTreeSet<u64> = [1, 2, 3, 4].into();
        let missing = judge("c", &more, &graph(&[(1, 2), (2, 3)])).unwrap();
        assert!(missing.contains("[4] are not in its graph"), "{missing}");
        let mut rootless = graph(&[(1, 2), (2, 3)]);
        rootless["root"] = json!(2);
        assert!(judge("c", &seqs, &rootless).unwrap().contains("not turn.opened"));
    }
}
