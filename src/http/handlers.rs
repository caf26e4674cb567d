//! One function per endpoint. Each parses its input, sends one message to
//! the node (which forwards it to the owning actor) and shapes the reply.

use super::reply::*;
use super::Api;
use crate::auth::{Principal, Role};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;
use warden_actors::authz::{PolicyInput, PolicyPrincipal};
use warden_actors::domain::{Action, Capability, Tier, Trust};
use warden_actors::error::WardenError;
use warden_actors::ids::*;
use warden_actors::memory::PutRequest;
use warden_actors::pipeline::SubmitRequest;
use warden_actors::sessions::{ModelCallRequest, OpenTurnRequest};
use warden_actors::store::{RecallQuery, TimelineQuery};
use warp::http::StatusCode;
use warp::Reply as _;

/// Longest long-poll of `GET /v1/actions/{id}?wait_ms=`.
pub const MAX_WAIT_MS: u64 = 30_000;
/// "Active" sessions had activity this recently.
pub const ACTIVE_SESSION_WINDOW_MS: u64 = 15 * 60 * 1000;

const DASHBOARD: &str = include_str!("../../static/index.html");

/// The dashboard's vendored libraries (`static/vendor/`, licences beside
/// them): name → (content type, bytes).
const VENDOR: &[(&str, &str, &[u8])] = &[
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../../static/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../static/vendor/uPlot.min.css")),
    ("dagre.min.js", "text/javascript; charset=utf-8", include_bytes!("../../static/vendor/dagre.min.js")),
    ("LICENSE-uplot", "text/plain; charset=utf-8", include_bytes!("../../static/vendor/LICENSE-uplot")),
    ("LICENSE-dagre", "text/plain; charset=utf-8", include_bytes!("../../static/vendor/LICENSE-dagre")),
];

/// Paths that exist for some method (for 405 rather than 404).
pub struct Handlers<'a> {
    pub api: &'a Api,
    pub cid: &'a CorrelationId,
    /// Who is asking, on a node with tokens.
    pub principal: Option<&'a Principal>,
}

/// Names a node: `{"node": "b"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeBody {
    node: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenTurnBody {
    correlation_id: Option<String>,
    trust: Option<Trust>,
    summary: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelCallBody {
    model: String,
    latency_ms: u64,
    ok: bool,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryBody {
    value: Value,
    #[serde(default)]
    tags: Vec<String>,
    turn_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    turn_id: String,
    capability: String,
    #[serde(default)]
    args: Value,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    approve: bool,
    /// Required without tokens; with them, the principal confirms and a `by`
    /// naming anyone else is refused.
    by: Option<String>,
}

/// `POST /v1/policies/decide`: a catalog capability by name, or one
/// described inline (`{name, tier, amount_limit?}`) to ask "what if".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    capability: CapabilityRef,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    trust: Trust,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CapabilityRef {
    Name(String),
    Inline(InlineCapability),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineCapability {
    name: String,
    tier: Tier,
    amount_limit: Option<f64>,
}

/// `PUT /v1/policies`: a bundle's files by path, and why.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    files: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    reason: String,
}

/// `POST /v1/policies/rollback`: the bundle to return to (default: the one before).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: Option<String>,
    #[serde(default)]
    reason: String,
}

/// Audit entries one `GET /v1/policies/audit` returns without `limit`.
pub const DEFAULT_AUDIT_PAGE: usize = 1_000;
/// The most it returns with one.
pub const MAX_AUDIT_PAGE: usize = 10_000;

fn limit(q: &Query) -> Result<Option<usize>, ApiError> {
    Ok(q.u64("limit")?.map(|l| l as usize))
}

/// A timeline page's `next` cursor: opaque to clients (`c` and the seq to
/// continue after, in hex).
fn encode_cursor(after: u64) -> String {
    format!("c{after:x}")
}

fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .strip_prefix('c')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ApiError::bad_request(format!("cursor {cursor:?} is not a cursor this node issued")))
}

/// Severities events carry (`store::index::severity`).
const SEVERITIES: [&str; 2] = ["page", "ticket"];

/// The timeline query of `GET /v1/timeline` and `GET /v1/incidents`.
fn timeline_query(q: &Query) -> Result<TimelineQuery, ApiError> {
    let owned = |key: &str| q.str(key).map(str::to_owned);
    let cursor = q.str("cursor").map(decode_cursor).transpose()?;
    let after_seq = match (q.u64("after")?, cursor) {
        (Some(a), Some(c)) => Some(a.max(c)),
        (a, c) => a.or(c),
    };
    let kind = owned("kind");
    if let Some(prefix) = &kind {
        if !warden_actors::domain::EventKind::ALL.iter().any(|k| k.as_str().starts_with(prefix.as_str())) {
            return Err(ApiError::bad_request(format!("kind {prefix:?} is the prefix of no event kind")));
        }
    }
    let severity = owned("severity");
    if let Some(s) = &severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!("severity must be one of {SEVERITIES:?}, not {s:?}")));
        }
    }
    Ok(TimelineQuery {
        from_ms: q.time_ms("from")?,
        to_ms: q.time_ms("to")?,
        after_seq,
        limit: limit(q)?,
        kind,
        node: owned("node"),
        capability: owned("capability"),
        session_id: owned("session_id"),
        action_id: owned("action_id"),
        severity,
        incidents_only: false,
    })
}

impl Handlers<'_> {
    /// The authenticated principal's name, if the node has tokens.
    fn who(&self) -> Option<&str> {
        self.principal.map(|p| p.name.as_str())
    }

    /// The principal as a policy sees it (`input.principal`).
    pub(super) fn policy_principal(&self) -> Option<PolicyPrincipal> {
        self.principal.map(|p| PolicyPrincipal { name: p.name.clone(), role: p.role.as_str().to_owned() })
    }

    pub fn dashboard(&self) -> ApiResult {
        Ok(warp::reply::with_header(warp::reply::html(DASHBOARD), "cache-control", "no-cache").into_response())
    }

    /// One of the dashboard's vendored files; they change only with the binary.
    pub fn vendor(&self, name: &str) -> ApiResult {
        let (_, content_type, bytes) = VENDOR
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| ApiError::not_found(format!("no vendored file {name:?}")))?;
        let reply = warp::reply::with_header(*bytes, "content-type", *content_type);
        Ok(warp::reply::with_header(reply, "cache-control", "public, max-age=3600").into_response())
    }

    pub async fn metrics(&self) -> ApiResult {
        let text = self.api.metrics.render(&self.api.node).await;
        let reply = warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4; charset=utf-8");
        Ok(reply.into_response())
    }

    /// This node's health; with `scope=cluster`, every node's and one verdict.
    pub async fn health(&self, q: &Query) -> ApiResult {
        match q.str("scope") {
            None | Some("node") => {}
            Some("cluster") => return json_reply(StatusCode::OK, &self.api.node.cluster_health().await?),
            Some(other) => return Err(ApiError::bad_request(format!("scope must be node or cluster, got {other:?}"))),
        }
        let health = self.api.node.health()?;
        let raft = self.api.node.raft_status();
        let mut body = to_value(&health);
        body["role"] = json!(raft.role);
        body["leader"] = json!(raft.leader);
        body["term"] = json!(raft.term);
        body["report"] = to_value(&self.api.node.report());
        json_reply(StatusCode::OK, &body)
    }

    /// This node's Raft view (leader, term, members with their replication
    /// lag as the leader knows it), its peers as the Registry's failure
    /// detector sees them, and the transport's sessions.
    pub async fn cluster(&self) -> ApiResult {
        let node = &self.api.node;
        let raft = node.raft_status();
        let member = |name: &str| raft.members.iter().find(|m| m.name == name);
        let raft_fields = |name: &str| match member(name) {
            Some(m) => json!({"role": if m.voter { "voter" } else { "learner" }, "matched": m.matched, "lag": m.lag}),
            None => json!({"role": "none"}),
        };
        let draining = node.draining_nodes()?;
        let running = node.running_per_node()?;
        let table = node.peers().await?;
        let hosted = |name: &str| -> Vec<&str> {
            let hosts = table.services.iter().filter(|p| p.hosts.iter().any(|h| h == name));
            hosts.map(|p| p.service.as_str()).collect()
        };
        let wire = warden_actors::version::WIRE;
        let mut nodes =
            vec![json!({"name": node.name(), "state": "up", "self": true, "last_heartbeat_ms": node.clock().now_ms(),
            "version": wire.to_string(),
            "raft": raft_fields(node.name()), "draining": draining.contains(node.name()),
            "running": running.get(node.name()).copied().unwrap_or(0), "services": hosted(node.name())})];
        for p in &table.peers {
            nodes.push(json!({"name": p.name, "state": p.state, "last_heartbeat_ms": p.last_heartbeat_ms,
                "silence_ms": p.silence_ms, "rejoins": p.rejoins, "raft": raft_fields(&p.name),
                "version": p.version.to_string(),
                "draining": draining.contains(&p.name), "running": running.get(&p.name).copied().unwrap_or(0),
                "services": hosted(&p.name)}));
        }
        let transport = self.api.cluster.as_ref().map(|c| c.view());
        let versions = node.consensus().member_versions();
        let cluster_version = warden_actors::version::Version::cluster(versions.values().copied());
        let versions: serde_json::Map<String, serde_json::Value> =
            versions.into_iter().map(|(n, v)| (n, json!(v.map(|v| v.to_string())))).collect();
        let body = json!({"leader": raft.leader, "term": raft.term, "role": raft.role, "nodes": nodes,
            "version": wire.to_string(), "cluster_version": cluster_version.to_string(), "member_versions": versions,
            "storage_schema": warden_actors::version::STORAGE_SCHEMA,
            "services": table.services, "raft": raft, "transport": transport});
        json_reply(StatusCode::OK, &body)
    }

    /// Adds a node (up, without a log of its own) as a voter, through the leader.
    pub async fn add_member(&self, body: &[u8]) -> ApiResult {
        let b: NodeBody = parse_json(body)?;
        self.api.node.add_node(&b.node, self.who()).await?;
        json_reply(StatusCode::CREATED, &json!({"added": b.node, "raft": self.api.node.raft_status()}))
    }

    /// Starts (`on`) or ends draining a node.
    pub async fn drain(&self, name: &str, on: bool) -> ApiResult {
        let report = self.api.node.drain(name, on, self.who()).await?;
        json_reply(if on { StatusCode::ACCEPTED } else { StatusCode::OK }, &to_value(&report))
    }

    /// Hands leadership to the named voter.
    pub async fn transfer_leader(&self, body: &[u8]) -> ApiResult {
        let b: NodeBody = parse_json(body)?;
        let (leader, term) = self.api.node.transfer_leadership(&b.node, self.who()).await?;
        json_reply(StatusCode::OK, &json!({"leader": leader, "term": term}))
    }

    /// Removes a member from the Raft group (executed by the leader).
    pub async fn remove_member(&self, name: &str) -> ApiResult {
        self.api.node.remove_member(name, self.who()).await?;
        json_reply(StatusCode::OK, &json!({"removed": name, "raft": self.api.node.raft_status()}))
    }

    /// The applied log index and a digest of the whole replicated state:
    /// replicas at the same index must show the same digest.
    pub async fn digest(&self) -> ApiResult {
        let (index, digest) = self.api.node.state_digest().await?;
        json_reply(StatusCode::OK, &json!({"node": self.api.node.name(), "applied_index": index, "digest": digest}))
    }

    pub fn capabilities(&self) -> ApiResult {
        let caps: Vec<_> = self.api.node.catalog().all().iter().map(|c| to_value(&**c)).collect();
        json_reply(StatusCode::OK, &json!({ "capabilities": caps }))
    }

    pub async fn open_turn(&self, sid: &str, body: &[u8]) -> ApiResult {
        let b: OpenTurnBody = parse_json(body)?;
        let correlation_id = match b.correlation_id {
            Some(c) => CorrelationId::parse(&c)?,
            None => self.cid.clone(),
        };
        let req = OpenTurnRequest {
            session_id: Some(SessionId::parse(sid)?),
            correlation_id: Some(correlation_id),
            trust: b.trust,
            summary: b.summary,
        };
        let turn = self.api.node.open_turn(req).await?;
        let body = json!({"turn_id": turn.id, "session_id": turn.session_id, "correlation_id": turn.correlation_id});
        json_reply(StatusCode::CREATED, &body)
    }

    pub async fn sessions(&self, q: &Query) -> ApiResult {
        let since = if q.bool("active")?.unwrap_or(false) {
            self.api.node.clock().now_ms().saturating_sub(ACTIVE_SESSION_WINDOW_MS)
        } else {
            0
        };
        let sessions = self.api.node.active_sessions(since).await?;
        json_reply(StatusCode::OK, &json!({ "sessions": sessions }))
    }

    pub async fn model_call(&self, tid: &str, body: &[u8]) -> ApiResult {
        let b: ModelCallBody = parse_json(body)?;
        let req = ModelCallRequest {
            turn_id: TurnId(tid.to_owned()),
            model: b.model,
            latency_ms: b.latency_ms,
            ok: b.ok,
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
        };
        let seq = self.api.node.record_model_call(req).await?;
        json_reply(StatusCode::CREATED, &json!({ "seq": seq }))
    }

    pub async fn put_memory(&self, ns: &str, key: &str, body: &[u8]) -> ApiResult {
        let b: MemoryBody = parse_json(body)?;
        let req = PutRequest {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value: b.value,
            tags: b.tags,
            turn_id: b.turn_id.map(TurnId),
            correlation_id: self.cid.clone(),
        };
        json_reply(StatusCode::OK, &self.api.node.put_memory(req).await?)
    }

    pub async fn get_memory(&self, ns: &str, key: &str) -> ApiResult {
        match self.api.node.get_memory(ns, key).await? {
            Some(item) => json_reply(StatusCode::OK, &item),
            None => {
                Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_memory_key", format!("no key {key:?} in {ns:?}")))
            }
        }
    }

    pub async fn recall(&self, ns: &str, q: &Query) -> ApiResult {
        let query = RecallQuery {
            prefix: q.str("prefix").map(Into::into),
            tag: q.str("tag").map(Into::into),
            text: q.str("q").map(Into::into),
            limit: limit(q)?,
        };
        let turn = q.str("turn_id").map(|t| TurnId(t.to_owned()));
        let items = self.api.node.recall(ns, query, turn).await?;
        json_reply(StatusCode::OK, &json!({ "items": items }))
    }

    pub async fn submit(&self, body: &[u8]) -> ApiResult {
        let b: SubmitBody = parse_json(body)?;
        let req = SubmitRequest {
            turn_id: TurnId(b.turn_id),
            capability: b.capability,
            args: b.args,
            idempotency_key: b.idempotency_key.as_deref().map(IdempotencyKey::parse).transpose()?,
            principal: self.policy_principal(),
        };
        let a = self.api.node.submit(req).await?;
        if !self.may_read(&a) {
            // The idempotency key is another principal's: its action is not this agent's to see.
            let message = "this idempotency key belongs to another principal's action; use a key of your own";
            return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message));
        }
        let body =
            json!({"action_id": a.id, "state": a.state, "decision": a.decision, "idempotency_key": a.idempotency_key});
        json_reply(StatusCode::ACCEPTED, &body)
    }

    /// Whether this caller may see `action`: an agent only its own (the
    /// ones its token submitted); operators, admins and open nodes all.
    pub(super) fn may_read(&self, action: &Action) -> bool {
        match self.principal {
            Some(p) if p.role == Role::Agent => action.submitted_by.as_deref() == Some(p.name.as_str()),
            _ => true,
        }
    }

    /// Someone else's action, to an agent, answers exactly like an unknown
    /// id: a 403 would confirm that the id exists.
    fn hidden(&self, action: &Action) -> Result<(), ApiError> {
        match self.may_read(action) {
            true => Ok(()),
            false => Err(WardenError::UnknownAction(action.id.to_string()).into()),
        }
    }

    pub async fn get_action(&self, id: &str, q: &Query) -> ApiResult {
        let id = ActionId(id.to_owned());
        if self.principal.is_some_and(|p| p.role == Role::Agent) {
            // Before any wait: an agent does not long-poll someone else's action.
            self.hidden(&self.api.node.action(&id)?)?;
        }
        let action = match q.u64("wait_ms")? {
            Some(ms) => {
                // A long-poll ends early when the node starts shutting down.
                let mut stopping = self.api.shutdown.clone();
                tokio::select! {
                    waited = self.api.node.wait_action(&id, Duration::from_millis(ms.min(MAX_WAIT_MS))) => waited?,
                    _ = stopping.wait_for(|s| *s) => self.api.node.action(&id)?,
                }
            }
            None => self.api.node.action(&id)?,
        };
        self.hidden(&action)?;
        json_reply(StatusCode::OK, &action)
    }

    pub async fn confirm(&self, id: &str, body: &[u8]) -> ApiResult {
        let b: ConfirmBody = parse_json(body)?;
        let by = match (self.who(), b.by) {
            (Some(me), Some(by)) if by != me => {
                let message = format!("`by` names {by:?} but the token is {me:?}'s: omit `by`, or name yourself");
                return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
            }
            (Some(me), _) => me.to_owned(),
            (None, Some(by)) => by,
            (None, None) => return Err(ApiError::bad_request("confirmation needs `by` (who confirms)")),
        };
        let a = self.api.node.confirm(&ActionId(id.to_owned()), b.approve, &by).await?;
        json_reply(StatusCode::OK, &a)
    }

    pub fn dlq(&self, q: &Query) -> ApiResult {
        let pending_only = !q.bool("all")?.unwrap_or(false);
        let entries = self.api.node.dlq(pending_only, limit(q)?)?;
        json_reply(StatusCode::OK, &json!({ "entries": entries }))
    }

    pub async fn replay(&self, id: &str) -> ApiResult {
        let a = self.api.node.replay_dlq(&DlqId(id.to_owned()), self.who()).await?;
        json_reply(StatusCode::ACCEPTED, &json!({"action_id": a.id, "state": a.state, "replay_of": a.replay_of}))
    }

    /// The entry's provenance: `dlq_id` and `chain` (the causal chain, turn
    /// first) and every link from the entry back to the session.
    pub async fn provenance(&self, id: &str) -> ApiResult {
        json_reply(StatusCode::OK, &self.api.node.provenance_of(&DlqId(id.to_owned())).await?)
    }

    /// The active policy: engine, bundle hash, revision, files.
    pub async fn policies(&self) -> ApiResult {
        json_reply(StatusCode::OK, &self.api.node.policy().await?)
    }

    /// What the active policy would decide; nothing is recorded.
    pub async fn policy_decide(&self, body: &[u8]) -> ApiResult {
        let b: DecideBody = parse_json(body)?;
        let capability = match b.capability {
            CapabilityRef::Name(name) => self.api.node.catalog().get(&name)?,
            CapabilityRef::Inline(c) => {
                let mut cap = Capability::new(&c.name, c.tier);
                cap.amount_limit = c.amount_limit;
                cap.validate()?;
                Arc::new(cap)
            }
        };
        let args = match b.args {
            Value::Null => json!({}),
            args @ Value::Object(_) => args,
            other => return Err(ApiError::bad_request(format!("args must be a JSON object, got {other}"))),
        };
        let input = PolicyInput::new(capability, args, b.trust).by(self.policy_principal());
        let decision = self.api.node.decide(&input).await?;
        json_reply(StatusCode::OK, &decision)
    }

    /// Who is changing the policy, and why.
    fn policy_change(&self, reason: String) -> warden_actors::policy::Change {
        let by = self.who().unwrap_or("anonymous").to_owned();
        warden_actors::policy::Change { by, reason, correlation_id: self.cid.clone() }
    }

    fn policy_outcome(outcome: warden_actors::policy::Outcome) -> ApiResult {
        use warden_actors::policy::Outcome;
        match outcome {
            Outcome::Activated { hash, revision, previous, audit_seq } => json_reply(
                StatusCode::OK,
                &json!({"hash": hash, "revision": revision, "previous": previous, "audit_seq": audit_seq}),
            ),
            Outcome::AlreadyActive { hash } => json_reply(StatusCode::OK, &json!({"hash": hash, "unchanged": true})),
            Outcome::Rejected { hash, failures, audit_seq } => {
                let message =
                    format!("the bundle did not pass the gate ({} failures); nothing changed", failures.len());
                Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_rejected", message)
                    .with("failures", json!(failures))
                    .with("hash", json!(hash))
                    .with("audit_seq", json!(audit_seq)))
            }
        }
    }

    /// A bundle through the gate, then activated on every node (admin).
    pub async fn push_policy(&self, body: &[u8]) -> ApiResult {
        let b: PushBody = parse_json(body)?;
        let outcome = self.api.node.push_policy(b.files, self.policy_change(b.reason)).await?;
        Self::policy_outcome(outcome)
    }

    /// A bundle of the history activated again (admin).
    pub async fn rollback_policy(&self, body: &[u8]) -> ApiResult {
        let b: RollbackBody = if body.is_empty() { RollbackBody::default() } else { parse_json(body)? };
        let outcome = self.api.node.rollback_policy(b.to, self.policy_change(b.reason)).await?;
        Self::policy_outcome(outcome)
    }

    /// The hash-chained audit of every policy mutation, oldest first.
    pub fn policy_audit(&self, q: &Query) -> ApiResult {
        let after = q.u64("after")?.unwrap_or(0);
        let limit = limit(q)?.unwrap_or(DEFAULT_AUDIT_PAGE).clamp(1, MAX_AUDIT_PAGE);
        let entries = self.api.node.policy_audit(after, limit)?;
        let next = (entries.len() == limit).then(|| entries.last().map(|e| e.seq)).flatten();
        json_reply(StatusCode::OK, &json!({ "entries": entries, "next": next }))
    }

    pub async fn breakers(&self) -> ApiResult {
        json_reply(StatusCode::OK, &json!({ "breakers": self.api.node.breakers().await? }))
    }

    /// `?scope=node` for this node alone; the cluster otherwise.
    pub async fn slo(&self, q: &Query) -> ApiResult {
        let node_only = match q.str("scope") {
            None | Some("cluster") => false,
            Some("node") => true,
            Some(other) => return Err(ApiError::bad_request(format!("scope must be node or cluster, not {other:?}"))),
        };
        json_reply(StatusCode::OK, &self.api.node.slo(node_only).await?)
    }

    /// Firing and recently resolved alerts, with their delivery per channel.
    pub async fn alerts(&self) -> ApiResult {
        json_reply(StatusCode::OK, &self.api.node.alerts().await?)
    }

    pub async fn timeline(&self, q: &Query) -> ApiResult {
        let page = self.api.node.timeline_page(timeline_query(q)?).await?;
        let next = page.next_after.map(encode_cursor);
        json_reply(StatusCode::OK, &json!({ "events": page.events, "next": next }))
    }

    /// An incident window: node-level events, alerts, failures and their causes, in log order.
    pub async fn incidents(&self, q: &Query) -> ApiResult {
        let query = timeline_query(q)?;
        let (from, to) = (query.from_ms, query.to_ms);
        let incidents = self.api.node.incidents(query).await?;
        let next = incidents.next_after.map(encode_cursor);
        let body = json!({
            "from": from,
            "to": to,
            "events": incidents.events,
            "causes": incidents.causes,
            "next": next,
        });
        json_reply(StatusCode::OK, &body)
    }

    pub async fn graph(&self, id: &str, q: &Query) -> ApiResult {
        let graph = self.api.node.correlation_graph(&CorrelationId(id.to_owned())).await?;
        match q.str("format") {
            None | Some("json") => json_reply(StatusCode::OK, &graph),
            Some("otlp-json") => json_reply(StatusCode::OK, &warden_actors::timeline::otlp_json(&graph)),
            Some(other) => Err(ApiError::bad_request(format!("format must be json or otlp-json, not {other:?}"))),
        }
    }

    /// Committed events as server-sent events, until the client leaves or the node stops.
    pub fn event_stream(&self) -> ApiResult {
        let mut shutdown = self.api.shutdown.clone();
        let stop = async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        let events = BroadcastStream::new(self.api.node.subscribe()).map(|item| {
            let event = match item {
                Ok(e) => warp::sse::Event::default()
                    .id(e.seq.to_string())
                    .event(e.kind().as_str())
                    .json_data(&*e)
                    .unwrap_or_else(|_| warp::sse::Event::default().comment("unencodable event")),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    warp::sse::Event::default().event("lagged").data(n.to_string())
                }
            };
            Ok::<_, std::convert::Infallible>(event)
        });
        let stream = events.take_until(Box::pin(stop));
        Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
    }
}
