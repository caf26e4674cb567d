//! The JSON of every event kind, pinned byte for byte: `GET /v1/timeline`,
//! the SSE stream and the correlation graph serialize `Event` with serde_json,
//! and clients read those bytes. The events are produced by the state machine
//! from commands (as a replica applies the log); node-level events go through
//! `Command::RecordEvent` with the data their emit sites record.

use serde_json::json;
use warden_actors::breaker::BreakerState;
use warden_actors::command::{Command, Entry};
use warden_actors::domain::*;
use warden_actors::ids::*;
use warden_actors::store::{open_database, StateMachine, Store, Tables, TimelineQuery};

fn decision(verdict: Verdict, tier: Tier) -> Decision {
    Decision { decision: verdict, tier, reasons: vec!["tier rule".into()], policy_hash: "p1".into() }
}

fn submit(id: &str, key: Option<&str>, verdict: Verdict, max_attempts: u32) -> Command {
    Command::SubmitAction {
        action_id: ActionId(id.into()),
        turn_id: TurnId("turn_1".into()),
        capability: "files.write".into(),
        args: json!({"path": "/tmp/x", "amount": 3}),
        idempotency_key: key.map(|k| IdempotencyKey(k.into())),
        decision: decision(verdict, if verdict == Verdict::Confirm { Tier::Confirm } else { Tier::Reversible }),
        max_attempts,
        backoff_ms: 10,
        confirm_ttl_ms: 500,
        submitted_by: None,
    }
}

fn dispatch(id: &str, attempt: u32, node: &str, reason: Option<&str>) -> Command {
    Command::Dispatch { action_id: ActionId(id.into()), attempt, node: node.into(), reason: reason.map(Into::into) }
}

fn finish(id: &str, attempt: u32, outcome: AttemptOutcome) -> Command {
    Command::FinishAttempt { action_id: ActionId(id.into()), attempt, outcome, latency_ms: 7 }
}

/// The data each node-level emit site records, one or more shapes per kind.
/// The policy lifecycle: an activation, a refused push, a rollback.
fn policy_events() -> Vec<Command> {
    let activate = |hash: &str, change| Command::ActivatePolicy {
        hash: hash.repeat(64),
        revision: format!("rev-{hash}"),
        bundle: std::collections::BTreeMap::from([("a.rego".to_owned(), "package a".to_owned())]),
        by: "root".into(),
        reason: "why \"not\"".into(),
        change,
        correlation_id: CorrelationId(format!("cid_policy_{hash}")),
    };
    vec![
        activate("a", PolicyChange::Push),
        activate("b", PolicyChange::Push),
        Command::RejectPolicy {
            hash: "c".repeat(64),
            revision: "rev-c".into(),
            by: "root".into(),
            failures: vec!["a.rego:1:9: unexpected token".into(), "test data.a.test_x: FAIL".into()],
            correlation_id: CorrelationId("cid_policy_c".into()),
        },
        activate("a", PolicyChange::Rollback),
    ]
}

fn node_level_events() -> Vec<Command> {
    let record = |cid: &str, data| Command::RecordEvent { correlation_id: CorrelationId(cid.into()), data };
    let s = |v: &str| v.to_owned();
    vec![
        // breaker.rs
        record(
            "breaker:files.write",
            EventData::BreakerChanged { capability: s("files.write"), state: BreakerState::HalfOpen },
        ),
        // supervisor.rs
        record("cid_restart", EventData::ActorRestarted { actor: s("warden.executors"), recent_restarts: 2 }),
        record("cid_settled", EventData::ActorsSettled { quiet_ms: 30_000 }),
        // node.rs
        record("node:a", EventData::NodeStarted { node: s("a"), capabilities: 4 }),
        // registry.rs
        record("node:b", EventData::NodeJoined { node: s("b"), rejoined: false }),
        record("node:b", EventData::NodeSuspect { node: s("b"), silence_ms: 512 }),
        record("node:b", EventData::NodeDown { node: s("b"), silence_ms: 1_003, cause: None }),
        record("node:c", EventData::NodeDown { node: s("c"), silence_ms: 40, cause: Some(DownCause::SessionClosed) }),
        record(
            "service:files.write",
            EventData::ServiceMoved {
                service: s("files.write"),
                from: Some(s("b")),
                to: Some(s("c")),
                node: Some(s("b")),
            },
        ),
        record(
            "service:files.read",
            EventData::ServiceMoved { service: s("files.read"), from: Some(s("c")), to: None, node: Some(s("c")) },
        ),
        // consensus/mod.rs
        record("raft:leader", EventData::LeaderChanged { leader: s("a"), term: 1, previous: None }),
        record("raft:leader", EventData::LeaderChanged { leader: s("b"), term: 2, previous: Some(s("a")) }),
        // orchestrator.rs
        record(
            "node:a",
            EventData::LeaderTransfer { from: Some(s("a")), to: s("b"), why: TransferReason::Drain, principal: None },
        ),
        record(
            "node:b",
            EventData::LeaderTransfer {
                from: Some(s("a")),
                to: s("b"),
                why: TransferReason::Requested,
                principal: Some(s("ops-admin")),
            },
        ),
        record("node:d", EventData::MemberAdded { node: s("d"), by: s("a"), principal: Some(s("ops-admin")) }),
        record("node:d", EventData::MemberRemoved { node: s("d"), by: s("a"), principal: None }),
        // slo/mod.rs: a trend opens (and its replay records nothing), a burn
        // and a breach open, the trend ends (and a stale end records nothing).
        slo("trend", 1, true, trend()),
        slo("trend", 1, true, trend()),
        slo(
            "burn.ticket",
            1,
            true,
            EventData::SloBurn {
                capability: s("files.write"),
                episode: 1,
                severity: SloSeverity::Ticket,
                factor: 1.0,
                long_window: s("3d"),
                short_window: s("6h"),
                long_rate: 1.25,
                short_rate: 2.5,
                error_budget: 0.01,
            },
        ),
        slo(
            "breached.latency",
            1,
            true,
            EventData::SloBreached {
                capability: s("files.write"),
                episode: 1,
                objective: s("latency"),
                window: s("5m"),
                value: 912.0,
                target: 800.0,
            },
        ),
        slo("trend", 1, false, recovered("trend")),
        slo("trend", 1, false, recovered("trend")),
        // Alerts follow from the events above (node.down, slo.*); a breaker
        // that opens raises one more, delivered once to a channel.
        record(
            "breaker:files.write",
            EventData::BreakerChanged { capability: s("files.write"), state: BreakerState::Open },
        ),
        Command::AlertDelivered {
            fingerprint: breaker_fingerprint(),
            episode: 1,
            state: AlertState::Firing,
            channel: s("webhook"),
            attempts: 2,
        },
    ]
}

fn breaker_fingerprint() -> String {
    let labels = [
        ("alertname", "WardenBreakerOpen"),
        ("capability", "files.write"),
        ("service", "warden"),
        ("severity", "page"),
    ];
    alert::fingerprint(&labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn slo(advisory: &str, episode: u64, open: bool, data: EventData) -> Command {
    Command::SloEpisode { capability: "files.write".into(), advisory: advisory.into(), episode, open, data }
}

fn trend() -> EventData {
    EventData::SloTrend {
        capability: "files.write".into(),
        episode: 1,
        p95_ms: 612.5,
        slo_p95_ms: 800,
        slope_ms_per_min: 9.75,
        projected_p95_ms: 810.0,
        horizon_ms: 600_000,
        breach_in_ms: Some(578_000),
    }
}

fn recovered(advisory: &str) -> EventData {
    EventData::SloRecovered { capability: "files.write".into(), episode: 1, advisory: advisory.into() }
}

/// Commands that make the state machine record every action, turn, memory
/// and DLQ event kind, each at its own time.
fn workflow() -> Vec<Command> {
    vec![
        Command::OpenTurn {
            turn_id: TurnId("turn_1".into()),
            session_id: SessionId("ses_1".into()),
            correlation_id: CorrelationId("cid_1".into()),
            trust: Some(Trust::Low),
            summary: None,
        },
        Command::OpenTurn {
            turn_id: TurnId("turn_2".into()),
            session_id: SessionId("ses_1".into()),
            correlation_id: CorrelationId("cid_2".into()),
            trust: None,
            summary: Some("second \"turn\"".into()),
        },
        Command::RecordModelCall {
            turn_id: TurnId("turn_1".into()),
            model: "m-1".into(),
            latency_ms: 120,
            ok: true,
            prompt_tokens: Some(12),
            completion_tokens: None,
        },
        Command::PutMemory {
            ns: "notes".into(),
            key: "k1".into(),
            value: json!({"z": 1, "a": [true, null]}),
            tags: vec!["t2".into(), "t1".into()],
            turn_id: Some(TurnId("turn_1".into())),
            correlation_id: CorrelationId("cid_ignored".into()),
        },
        Command::PutMemory {
            ns: "notes".into(),
            key: "k1".into(),
            value: json!(2),
            tags: vec![],
            turn_id: None,
            correlation_id: CorrelationId("cid_mem".into()),
        },
        Command::RecordRecall {
            turn_id: TurnId("turn_1".into()),
            ns: "notes".into(),
            query: json!({"tags": ["t1"], "limit": 5}),
            hits: vec!["k1".into()],
        },
        // Confirmed, taken over, then succeeds.
        submit("act_1", Some("key-1"), Verdict::Confirm, 3),
        Command::Confirm { action_id: ActionId("act_1".into()), approve: true, by: "ops".into() },
        dispatch("act_1", 1, "b", None),
        dispatch("act_1", 2, "c", Some("node_down")),
        finish("act_1", 2, AttemptOutcome::OK),
        // Exhausts its one attempt: dead-lettered, then replayed.
        submit("act_2", None, Verdict::Allow, 1),
        dispatch("act_2", 1, "b", None),
        finish("act_2", 1, AttemptOutcome::Retryable { error: "503 from tool".into() }),
        Command::ReplayDlq {
            dlq_id: DlqId("dlq_2".into()),
            new_action_id: ActionId("act_3".into()),
            decision: decision(Verdict::Allow, Tier::Reversible),
            confirm_ttl_ms: 500,
            principal: Some("ops-1".into()),
        },
        // Fails permanently.
        dispatch("act_3", 1, "c", None),
        finish("act_3", 1, AttemptOutcome::Permanent { error: "400 bad path".into() }),
        // One that will expire; one denied; one rejected by its confirmer; the expiry.
        submit("act_6", None, Verdict::Confirm, 3),
        submit("act_4", None, Verdict::Deny, 3),
        submit("act_5", None, Verdict::Confirm, 3),
        Command::Confirm { action_id: ActionId("act_5".into()), approve: false, by: "ops".into() },
        Command::ExpireConfirmation { action_id: ActionId("act_6".into()) },
        Command::SetDraining { node: "b".into(), draining: true, shutdown: false, principal: Some("ops-1".into()) },
        Command::SetDraining { node: "c".into(), draining: true, shutdown: true, principal: None },
    ]
}

/// Applies the workflow, then the node-level events, in one committed
/// transaction; returns every event recorded, in seq order.
fn record_every_kind(db: &redb::Database) -> Vec<Event> {
    let txn = db.begin_write().unwrap();
    let mut events = Vec::new();
    {
        let mut tables = Tables::open(&txn).unwrap();
        let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
        for (i, cmd) in workflow().into_iter().chain(node_level_events()).chain(policy_events()).enumerate() {
            let i = i as u64;
            // 200 ms apart, so the expiring confirmation (ttl 500 ms) is due when expired.
            let entry = Entry { at_ms: 1_700_000_000_000 + 200 * i, node: ["a", "b"][i as usize % 2].into(), cmd };
            events.extend(machine.apply_at(&mut tables, i + 1, &entry).unwrap().unwrap().events);
        }
        machine.save(&mut tables).unwrap();
    }
    txn.commit().unwrap();
    events
}

/// Every event the commands record, as serde_json writes it (SSE, graph),
/// and as a `Value` (what `GET /v1/timeline` embeds in its reply).
fn event_json() -> Vec<(String, serde_json::Value)> {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(&dir.path().join("events.redb")).unwrap();
    let events = record_every_kind(&db);
    events.iter().map(|e| (serde_json::to_string(e).unwrap(), serde_json::to_value(e).unwrap())).collect()
}

const EXPECTED: &str = r#"
{"seq":1,"ts":1700000000000,"node":"a","kind":"turn.opened","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":null,"causation_seq":null,"data":{"summary":null,"trust":"low"}}
{"seq":2,"ts":1700000000200,"node":"b","kind":"turn.opened","session_id":"ses_1","turn_id":"turn_2","correlation_id":"cid_2","action_id":null,"causation_seq":null,"data":{"summary":"second \"turn\"","trust":"low"}}
{"seq":3,"ts":1700000000400,"node":"a","kind":"model.call","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":null,"causation_seq":1,"data":{"completion_tokens":null,"latency_ms":120,"model":"m-1","ok":true,"prompt_tokens":12}}
{"seq":4,"ts":1700000000600,"node":"b","kind":"memory.write","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":null,"causation_seq":1,"data":{"key":"k1","ns":"notes","tags":["t2","t1"],"version":1}}
{"seq":5,"ts":1700000000800,"node":"a","kind":"memory.write","session_id":null,"turn_id":null,"correlation_id":"cid_mem","action_id":null,"causation_seq":null,"data":{"key":"k1","ns":"notes","tags":[],"version":2}}
{"seq":6,"ts":1700000001000,"node":"b","kind":"memory.recall","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":null,"causation_seq":1,"data":{"hits":["k1"],"ns":"notes","query":{"limit":5,"tags":["t1"]}}}
{"seq":7,"ts":1700000001200,"node":"a","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":1,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"key-1","replay_of":null}}
{"seq":8,"ts":1700000001200,"node":"a","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":7,"data":{"decision":"confirm","policy_hash":"p1","reasons":["tier rule"],"tier":2}}
{"seq":9,"ts":1700000001200,"node":"a","kind":"confirmation.requested","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":8,"data":{"deadline_ms":1700000001700}}
{"seq":10,"ts":1700000001400,"node":"b","kind":"confirmation.given","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":9,"data":{"approve":true,"by":"ops"}}
{"seq":11,"ts":1700000001600,"node":"a","kind":"action.dispatched","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":10,"data":{"attempt":1,"by":"a","node":"b","takeover":false}}
{"seq":12,"ts":1700000001800,"node":"b","kind":"action.takeover","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":11,"data":{"attempt":2,"from":"b","interrupted_attempt":1,"reason":"node_down","running_ms":200,"to":"c"}}
{"seq":13,"ts":1700000001800,"node":"b","kind":"action.dispatched","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":12,"data":{"attempt":2,"by":"b","node":"c","takeover":true}}
{"seq":14,"ts":1700000002000,"node":"a","kind":"action.attempt","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":13,"data":{"attempt":2,"capability":"files.write","latency_ms":7,"node":"a","outcome":{"outcome":"succeeded"}}}
{"seq":15,"ts":1700000002000,"node":"a","kind":"action.succeeded","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_1","causation_seq":14,"data":{"attempts":2}}
{"seq":16,"ts":1700000002200,"node":"b","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":1,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"idem-act_2","replay_of":null}}
{"seq":17,"ts":1700000002200,"node":"b","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":16,"data":{"decision":"allow","policy_hash":"p1","reasons":["tier rule"],"tier":1}}
{"seq":18,"ts":1700000002400,"node":"a","kind":"action.dispatched","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":17,"data":{"attempt":1,"by":"a","node":"b","takeover":false}}
{"seq":19,"ts":1700000002600,"node":"b","kind":"action.attempt","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":18,"data":{"attempt":1,"capability":"files.write","latency_ms":7,"node":"b","outcome":{"error":"503 from tool","outcome":"retryable"}}}
{"seq":20,"ts":1700000002600,"node":"b","kind":"action.failed","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":19,"data":{"attempts":1,"error":"503 from tool","permanent":false}}
{"seq":21,"ts":1700000002600,"node":"b","kind":"dlq.entered","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":20,"data":{"attempts":1,"capability":"files.write","dlq_id":"dlq_2","error":"503 from tool","waiting":1}}
{"seq":22,"ts":1700000002800,"node":"a","kind":"dlq.replayed","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_2","causation_seq":21,"data":{"action_id":"act_3","capability":"files.write","dlq_id":"dlq_2","original_action_id":"act_2","principal":"ops-1","waiting":0}}
{"seq":23,"ts":1700000002800,"node":"a","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_3","causation_seq":22,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"idem-act_2","replay_of":"dlq_2"}}
{"seq":24,"ts":1700000002800,"node":"a","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_3","causation_seq":23,"data":{"decision":"allow","policy_hash":"p1","reasons":["tier rule"],"tier":1}}
{"seq":25,"ts":1700000003000,"node":"b","kind":"action.dispatched","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_3","causation_seq":24,"data":{"attempt":1,"by":"b","node":"c","takeover":false}}
{"seq":26,"ts":1700000003200,"node":"a","kind":"action.attempt","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_3","causation_seq":25,"data":{"attempt":1,"capability":"files.write","latency_ms":7,"node":"a","outcome":{"error":"400 bad path","outcome":"permanent"}}}
{"seq":27,"ts":1700000003200,"node":"a","kind":"action.failed","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_3","causation_seq":26,"data":{"attempts":1,"error":"400 bad path","permanent":true}}
{"seq":28,"ts":1700000003400,"node":"b","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_6","causation_seq":1,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"idem-act_6","replay_of":null}}
{"seq":29,"ts":1700000003400,"node":"b","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_6","causation_seq":28,"data":{"decision":"confirm","policy_hash":"p1","reasons":["tier rule"],"tier":2}}
{"seq":30,"ts":1700000003400,"node":"b","kind":"confirmation.requested","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_6","causation_seq":29,"data":{"deadline_ms":1700000003900}}
{"seq":31,"ts":1700000003600,"node":"a","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_4","causation_seq":1,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"idem-act_4","replay_of":null}}
{"seq":32,"ts":1700000003600,"node":"a","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_4","causation_seq":31,"data":{"decision":"deny","policy_hash":"p1","reasons":["tier rule"],"tier":1}}
{"seq":33,"ts":1700000003800,"node":"b","kind":"action.submitted","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_5","causation_seq":1,"data":{"args":{"amount":3,"path":"/tmp/x"},"capability":"files.write","idempotency_key":"idem-act_5","replay_of":null}}
{"seq":34,"ts":1700000003800,"node":"b","kind":"policy.decided","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_5","causation_seq":33,"data":{"decision":"confirm","policy_hash":"p1","reasons":["tier rule"],"tier":2}}
{"seq":35,"ts":1700000003800,"node":"b","kind":"confirmation.requested","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_5","causation_seq":34,"data":{"deadline_ms":1700000004300}}
{"seq":36,"ts":1700000004000,"node":"a","kind":"confirmation.given","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_5","causation_seq":35,"data":{"approve":false,"by":"ops"}}
{"seq":37,"ts":1700000004200,"node":"b","kind":"confirmation.expired","session_id":"ses_1","turn_id":"turn_1","correlation_id":"cid_1","action_id":"act_6","causation_seq":30,"data":{"deadline_ms":1700000003900}}
{"seq":38,"ts":1700000004400,"node":"a","kind":"node.draining","session_id":null,"turn_id":null,"correlation_id":"node:b","action_id":null,"causation_seq":null,"data":{"draining":true,"node":"b","principal":"ops-1","shutdown":false}}
{"seq":39,"ts":1700000004600,"node":"b","kind":"node.draining","session_id":null,"turn_id":null,"correlation_id":"node:c","action_id":null,"causation_seq":null,"data":{"draining":true,"node":"c","shutdown":true}}
{"seq":40,"ts":1700000004800,"node":"a","kind":"breaker.changed","session_id":null,"turn_id":null,"correlation_id":"breaker:files.write","action_id":null,"causation_seq":null,"data":{"capability":"files.write","state":"half_open"}}
{"seq":41,"ts":1700000005000,"node":"b","kind":"actor.restarted","session_id":null,"turn_id":null,"correlation_id":"cid_restart","action_id":null,"causation_seq":null,"data":{"actor":"warden.executors","recent_restarts":2}}
{"seq":42,"ts":1700000005200,"node":"a","kind":"actors.settled","session_id":null,"turn_id":null,"correlation_id":"cid_settled","action_id":null,"causation_seq":null,"data":{"quiet_ms":30000}}
{"seq":43,"ts":1700000005400,"node":"b","kind":"node.started","session_id":null,"turn_id":null,"correlation_id":"node:a","action_id":null,"causation_seq":null,"data":{"capabilities":4,"node":"a"}}
{"seq":44,"ts":1700000005600,"node":"a","kind":"node.joined","session_id":null,"turn_id":null,"correlation_id":"node:b","action_id":null,"causation_seq":null,"data":{"node":"b","rejoined":false}}
{"seq":45,"ts":1700000005800,"node":"b","kind":"node.suspect","session_id":null,"turn_id":null,"correlation_id":"node:b","action_id":null,"causation_seq":null,"data":{"node":"b","silence_ms":512}}
{"seq":46,"ts":1700000006000,"node":"a","kind":"node.down","session_id":null,"turn_id":null,"correlation_id":"node:b","action_id":null,"causation_seq":null,"data":{"node":"b","silence_ms":1003}}
{"seq":47,"ts":1700000006000,"node":"a","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:25f74ffa756a3a34:1","action_id":null,"causation_seq":46,"data":{"annotations":{"description":"b was silent for 1003 ms or lost its transport session; its attempts are taken over.","silence_ms":"1003","summary":"node b is down"},"cause":"node:b","episode":1,"fingerprint":"25f74ffa756a3a34","labels":{"alertname":"WardenNodeDown","node":"b","service":"warden","severity":"page"},"name":"WardenNodeDown","severity":"page"}}
{"seq":48,"ts":1700000006200,"node":"b","kind":"node.down","session_id":null,"turn_id":null,"correlation_id":"node:c","action_id":null,"causation_seq":null,"data":{"cause":"session_closed","node":"c","silence_ms":40}}
{"seq":49,"ts":1700000006200,"node":"b","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:ace7704f2e6dbd6c:1","action_id":null,"causation_seq":48,"data":{"annotations":{"description":"c was silent for 40 ms or lost its transport session; its attempts are taken over.","silence_ms":"40","summary":"node c is down"},"cause":"node:c","episode":1,"fingerprint":"ace7704f2e6dbd6c","labels":{"alertname":"WardenNodeDown","node":"c","service":"warden","severity":"page"},"name":"WardenNodeDown","severity":"page"}}
{"seq":50,"ts":1700000006400,"node":"a","kind":"service.moved","session_id":null,"turn_id":null,"correlation_id":"service:files.write","action_id":null,"causation_seq":null,"data":{"from":"b","node":"b","service":"files.write","to":"c"}}
{"seq":51,"ts":1700000006600,"node":"b","kind":"service.moved","session_id":null,"turn_id":null,"correlation_id":"service:files.read","action_id":null,"causation_seq":null,"data":{"from":"c","node":"c","service":"files.read","to":null}}
{"seq":52,"ts":1700000006800,"node":"a","kind":"leader.changed","session_id":null,"turn_id":null,"correlation_id":"raft:leader","action_id":null,"causation_seq":null,"data":{"leader":"a","previous":null,"term":1}}
{"seq":53,"ts":1700000007000,"node":"b","kind":"leader.changed","session_id":null,"turn_id":null,"correlation_id":"raft:leader","action_id":null,"causation_seq":null,"data":{"leader":"b","previous":"a","term":2}}
{"seq":54,"ts":1700000007200,"node":"a","kind":"leader.transfer","session_id":null,"turn_id":null,"correlation_id":"node:a","action_id":null,"causation_seq":null,"data":{"from":"a","to":"b","why":"drain"}}
{"seq":55,"ts":1700000007400,"node":"b","kind":"leader.transfer","session_id":null,"turn_id":null,"correlation_id":"node:b","action_id":null,"causation_seq":null,"data":{"from":"a","principal":"ops-admin","to":"b","why":"requested"}}
{"seq":56,"ts":1700000007600,"node":"a","kind":"member.added","session_id":null,"turn_id":null,"correlation_id":"node:d","action_id":null,"causation_seq":null,"data":{"by":"a","node":"d","principal":"ops-admin"}}
{"seq":57,"ts":1700000007800,"node":"b","kind":"member.removed","session_id":null,"turn_id":null,"correlation_id":"node:d","action_id":null,"causation_seq":null,"data":{"by":"a","node":"d"}}
{"seq":58,"ts":1700000008000,"node":"a","kind":"slo.trend","session_id":null,"turn_id":null,"correlation_id":"slo:files.write:trend:1","action_id":null,"causation_seq":null,"data":{"breach_in_ms":578000,"capability":"files.write","episode":1,"horizon_ms":600000,"p95_ms":612.5,"projected_p95_ms":810.0,"slo_p95_ms":800,"slope_ms_per_min":9.75}}
{"seq":59,"ts":1700000008000,"node":"a","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:56490508d82bc57d:1","action_id":null,"causation_seq":58,"data":{"annotations":{"breach_in_ms":"578000","description":"The p95 of files.write is 612 ms and rising 9.8 ms/min; projected 810 ms within the horizon.","p95_ms":"612.5","projected_p95_ms":"810.0","slo_p95_ms":"800","slope_ms_per_min":"9.75","summary":"files.write: p95 heads for its 800 ms SLO"},"cause":"slo:files.write:trend:1","episode":1,"fingerprint":"56490508d82bc57d","labels":{"alertname":"WardenSloTrend","capability":"files.write","service":"warden","severity":"ticket"},"name":"WardenSloTrend","severity":"ticket"}}
{"seq":60,"ts":1700000008400,"node":"a","kind":"slo.burn","session_id":null,"turn_id":null,"correlation_id":"slo:files.write:burn.ticket:1","action_id":null,"causation_seq":null,"data":{"capability":"files.write","episode":1,"error_budget":0.01,"factor":1.0,"long_rate":1.25,"long_window":"3d","severity":"ticket","short_rate":2.5,"short_window":"6h"}}
{"seq":61,"ts":1700000008400,"node":"a","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:49f89277f333dbac:1","action_id":null,"causation_seq":60,"data":{"annotations":{"burn_factor":"1","description":"files.write spends its error budget at ≥ 1× the sustainable rate over both 3d (1.25×) and 6h (2.50×).","long_rate":"1.250","long_window":"3d","short_rate":"2.500","short_window":"6h","summary":"files.write: error budget burning at 1.2× over 3d"},"cause":"slo:files.write:burn.ticket:1","episode":1,"fingerprint":"49f89277f333dbac","labels":{"alertname":"WardenSloBurn","capability":"files.write","service":"warden","severity":"ticket"},"name":"WardenSloBurn","severity":"ticket"}}
{"seq":62,"ts":1700000008600,"node":"b","kind":"slo.breached","session_id":null,"turn_id":null,"correlation_id":"slo:files.write:breached.latency:1","action_id":null,"causation_seq":null,"data":{"capability":"files.write","episode":1,"objective":"latency","target":800.0,"value":912.0,"window":"5m"}}
{"seq":63,"ts":1700000008600,"node":"b","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:9d45f157f69fadc1:1","action_id":null,"causation_seq":62,"data":{"annotations":{"description":"files.write misses its latency objective over 5m.","objective":"latency","summary":"files.write: latency SLO missed (912.000 over 800.000)","target":"800.000","value":"912.000","window":"5m"},"cause":"slo:files.write:breached.latency:1","episode":1,"fingerprint":"9d45f157f69fadc1","labels":{"alertname":"WardenSloLatencyBreached","capability":"files.write","service":"warden","severity":"page"},"name":"WardenSloLatencyBreached","severity":"page"}}
{"seq":64,"ts":1700000008800,"node":"a","kind":"slo.recovered","session_id":null,"turn_id":null,"correlation_id":"slo:files.write:trend:1","action_id":null,"causation_seq":null,"data":{"advisory":"trend","capability":"files.write","episode":1}}
{"seq":65,"ts":1700000008800,"node":"a","kind":"alert.resolved","session_id":null,"turn_id":null,"correlation_id":"alert:56490508d82bc57d:1","action_id":null,"causation_seq":64,"data":{"cause":"slo:files.write:trend:1","episode":1,"fingerprint":"56490508d82bc57d","name":"WardenSloTrend"}}
{"seq":66,"ts":1700000009200,"node":"a","kind":"breaker.changed","session_id":null,"turn_id":null,"correlation_id":"breaker:files.write","action_id":null,"causation_seq":null,"data":{"capability":"files.write","state":"open"}}
{"seq":67,"ts":1700000009200,"node":"a","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:aac4f94542220761:1","action_id":null,"causation_seq":66,"data":{"annotations":{"description":"The tool behind files.write failed often enough on a that its breaker opened: actions of files.write fail fast there until a probe succeeds.","node":"a","summary":"files.write: circuit breaker open on a"},"cause":"breaker:files.write","episode":1,"fingerprint":"aac4f94542220761","labels":{"alertname":"WardenBreakerOpen","capability":"files.write","service":"warden","severity":"page"},"name":"WardenBreakerOpen","severity":"page"}}
{"seq":68,"ts":1700000009400,"node":"b","kind":"alert.delivered","session_id":null,"turn_id":null,"correlation_id":"alert:aac4f94542220761:1","action_id":null,"causation_seq":null,"data":{"attempts":2,"channel":"webhook","delivery_id":"aac4f94542220761-1-firing","episode":1,"fingerprint":"aac4f94542220761","state":"firing"}}
{"seq":69,"ts":1700000009600,"node":"a","kind":"policy.activated","session_id":null,"turn_id":null,"correlation_id":"cid_policy_a","action_id":null,"causation_seq":null,"data":{"audit_seq":1,"by":"root","change":"push","hash":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","old_hash":null,"reason":"why \"not\"","revision":"rev-a"}}
{"seq":70,"ts":1700000009800,"node":"b","kind":"policy.activated","session_id":null,"turn_id":null,"correlation_id":"cid_policy_b","action_id":null,"causation_seq":null,"data":{"audit_seq":2,"by":"root","change":"push","hash":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","old_hash":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","reason":"why \"not\"","revision":"rev-b"}}
{"seq":71,"ts":1700000010000,"node":"a","kind":"policy.rejected","session_id":null,"turn_id":null,"correlation_id":"cid_policy_c","action_id":null,"causation_seq":null,"data":{"audit_seq":3,"by":"root","failures":["a.rego:1:9: unexpected token","test data.a.test_x: FAIL"],"hash":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","revision":"rev-c"}}
{"seq":72,"ts":1700000010000,"node":"a","kind":"alert.raised","session_id":null,"turn_id":null,"correlation_id":"alert:ffd1bf8419746f66:1","action_id":null,"causation_seq":71,"data":{"annotations":{"by":"root","description":"The gate refused bundle cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc (2 failures, the first: a.rego:1:9: unexpected token). The active policy is unchanged; GET /v1/policies/audit has every failure.","hash":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","revision":"rev-c","summary":"policy bundle rev-c pushed by root was refused"},"cause":"cid_policy_c","episode":1,"fingerprint":"ffd1bf8419746f66","labels":{"alertname":"WardenPolicyRejected","policy":"push","service":"warden","severity":"ticket"},"name":"WardenPolicyRejected","severity":"ticket"}}
{"seq":73,"ts":1700000010200,"node":"b","kind":"policy.activated","session_id":null,"turn_id":null,"correlation_id":"cid_policy_a","action_id":null,"causation_seq":null,"data":{"audit_seq":4,"by":"root","change":"rollback","hash":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","old_hash":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","reason":"why \"not\"","revision":"rev-a"}}
{"seq":74,"ts":1700000010200,"node":"b","kind":"alert.resolved","session_id":null,"turn_id":null,"correlation_id":"alert:ffd1bf8419746f66:1","action_id":null,"causation_seq":73,"data":{"cause":"cid_policy_a","episode":1,"fingerprint":"ffd1bf8419746f66","name":"WardenPolicyRejected"}}
"#;

#[test]
fn every_event_kind_keeps_its_json_byte_for_byte() {
    let actual = event_json();
    // After an intended change: `DUMP_EVENTS=file cargo test`, review the file's lines, paste them above.
    if let Ok(path) = std::env::var("DUMP_EVENTS") {
        std::fs::write(path, actual.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>().join("\n")).unwrap();
    }
    let expected: Vec<&str> = EXPECTED.trim().lines().collect();
    for (i, ((text, value), e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(text, e, "event {} differs", i + 1);
        assert_eq!(*value, serde_json::from_str::<serde_json::Value>(e).unwrap(), "event {} as a value", i + 1);
    }
    let texts: Vec<&str> = actual.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(actual.len(), expected.len(), "{}", texts.join("\n"));
}

#[test]
fn the_pinned_events_cover_every_kind() {
    let kinds: std::collections::BTreeSet<String> = EXPECTED
        .trim()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "{kinds:?}");
}

#[test]
fn every_event_kind_reads_back_from_the_store_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open_database(&dir.path().join("events.redb")).unwrap());
    let recorded = record_every_kind(&db);
    let store = Store::new(db);
    let read = store.timeline(&TimelineQuery { limit: Some(recorded.len()), ..Default::default() }).unwrap();
    assert_eq!(read, recorded);
    let graph = store.events_by_correlation(&CorrelationId("cid_1".into()), None).unwrap();
    assert_eq!(graph, recorded.into_iter().filter(|e| e.correlation_id.as_str() == "cid_1").collect::<Vec<_>>());
}
