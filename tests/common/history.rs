//! A long event history built by applying real commands to a node's state
//! machine, as three nodes (`n1`, `n2`, `n3`) would propose them: turns with
//! model calls and recalls, actions (some confirmed, some taken over from a
//! node that went down, some dead-lettered and replayed, replays replayed
//! again), node-level facts (nodes down and back, leader changes, breakers)
//! and the alerts they raise. Deterministic for a seed. The timeline tests
//! and the `timeline_query` bench use it.

use std::sync::Arc;
use warden_actors::command::{Command, Entry};
use warden_actors::domain::*;
use warden_actors::ids::*;
use warden_actors::store::{open_database, EventIndex, StateMachine, Store, Tables};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
pub const CAPABILITIES: [&str; 4] = ["search.web", "email.send", "flaky.api", "db.query"];

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// What the generator made of one turn.
#[derive(Clone, Debug)]
pub struct TurnRecord {
    pub turn_id: TurnId,
    pub session_id: SessionId,
    pub correlation_id: CorrelationId,
    /// The turn's first action and its replays, in order.
    pub actions: Vec<ActionId>,
    /// Dead-letter entries of the turn's actions, in order.
    pub dead: Vec<DlqId>,
    /// Some attempt of the turn's actions was taken over.
    pub took_over: bool,
    /// The turn's first action waited for a confirmation.
    pub confirmed: bool,
}

/// How the generator shapes the history.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// One turn in this many dead-letters its action (the others succeed).
    pub dead_one_in: u64,
    /// One action in this many has its first attempt taken over.
    pub takeover_one_in: u64,
    /// One action in this many asks for a confirmation.
    pub confirm_one_in: u64,
    /// How many times a dead-lettered action is replayed and dead-lettered
    /// again (the last replay succeeds).
    pub replays: u32,
    /// One turn in this many is followed by a node-level fact.
    pub node_event_one_in: u64,
}

pub struct History {
    pub store: Store,
    machine: StateMachine,
    index: u64,
    at_ms: u64,
    rng: Rng,
    pending: Vec<Entry>,
    turns: u64,
    pub records: Vec<TurnRecord>,
    /// Keep `records` (tests); a bench building millions of events does not.
    pub keep_records: bool,
}

fn decision(verdict: Verdict) -> Decision {
    let tier = if verdict == Verdict::Confirm { Tier::Confirm } else { Tier::Observe };
    Decision { decision: verdict, tier, reasons: vec![format!("rule:{verdict:?}")], policy_hash: "p1".into() }
}

impl History {
    /// A fresh history in `path` (a redb file), starting at `start_ms`.
    pub fn create(path: &std::path::Path, seed: u64, start_ms: u64) -> Self {
        let db = Arc::new(open_database(path).expect("open the database"));
        let index = Arc::new(EventIndex::open(&path.with_extension("index.redb")).expect("open the index"));
        Self {
            store: Store::with_index(db, index),
            machine: StateMachine { next_seq: 1, ..StateMachine::default() },
            index: 0,
            at_ms: start_ms,
            rng: Rng::new(seed),
            pending: Vec::new(),
            turns: 0,
            records: Vec::new(),
            keep_records: true,
        }
    }

    /// How many events the history holds (committed or not).
    pub fn events(&self) -> u64 {
        self.machine.next_seq - 1
    }

    fn node(&mut self) -> String {
        NODES[self.rng.below(3) as usize].to_owned()
    }

    fn push(&mut self, node: &str, cmd: Command) {
        self.at_ms += 1 + self.rng.below(3);
        self.pending.push(Entry { at_ms: self.at_ms, node: node.to_owned(), cmd });
    }

    /// Applies the commands queued so far in one write transaction (every
    /// one must be accepted), then indexes their events, as a node's indexer would.
    pub fn commit(&mut self) {
        let db = self.store.database().clone();
        let txn = db.begin_write().expect("begin");
        {
            let mut tables = Tables::open(&txn).expect("tables");
            for entry in std::mem::take(&mut self.pending) {
                self.index += 1;
                let name = entry.cmd.name();
                let applied = self.machine.apply_at(&mut tables, self.index, &entry).expect("storage");
                if let Err(e) = applied {
                    panic!("{name} at index {} was refused: {e}", self.index);
                }
            }
            self.machine.save(&mut tables).expect("save");
        }
        txn.commit().expect("commit");
        while self.store.index_catch_up(usize::MAX).expect("index").is_some_and(|c| c.indexed > 0) {}
    }

    /// Runs attempts of `action` until it succeeds (`succeed`) or is
    /// dead-lettered; the first attempt is taken over when `takeover`.
    fn run_action(&mut self, action: &ActionId, max_attempts: u32, takeover: bool, succeed: bool) {
        let mut attempt = 1;
        let node = self.node();
        self.push(&node, Command::Dispatch { action_id: action.clone(), attempt, node: node.clone(), reason: None });
        if takeover {
            // The node running attempt 1 goes silent; its attempt moves on.
            let down = node.clone();
            let leader = NODES.iter().find(|n| **n != down).copied().unwrap_or("n1");
            let data = EventData::NodeDown { node: down.clone(), silence_ms: 3_000, cause: None };
            self.push(leader, Command::RecordEvent { correlation_id: CorrelationId(format!("node:{down}")), data });
            attempt += 1;
            let to = NODES.iter().find(|n| **n != down && **n != leader).copied().unwrap_or(leader).to_owned();
            let reason = Some(format!("{down} is down"));
            self.push(leader, Command::Dispatch { action_id: action.clone(), attempt, node: to, reason });
            let data = EventData::NodeJoined { node: down.clone(), rejoined: true };
            self.push(&down, Command::RecordEvent { correlation_id: CorrelationId(format!("node:{down}")), data });
        }
        let mut failures = 0;
        loop {
            let node = self.node();
            let outcome = if succeed {
                AttemptOutcome::Succeeded { result: None }
            } else {
                AttemptOutcome::Retryable { error: "upstream 503".into() }
            };
            let latency_ms = 5 + self.rng.below(200);
            self.push(&node, Command::FinishAttempt { action_id: action.clone(), attempt, outcome, latency_ms });
            failures += 1;
            if succeed || failures >= max_attempts {
                return;
            }
            attempt += 1;
            let node = self.node();
            self.push(
                &node,
                Command::Dispatch { action_id: action.clone(), attempt, node: node.clone(), reason: None },
            );
        }
    }

    /// One turn: opened, a model call and a recall, one action (maybe
    /// confirmed, taken over, dead-lettered and replayed), maybe a node fact.
    pub fn turn(&mut self, mix: Mix) {
        self.turns += 1;
        let i = self.turns;
        let turn_id = TurnId(format!("turn_{i}"));
        let session_id = SessionId(format!("sess_{}", i % 97));
        let correlation_id = CorrelationId(format!("cor_{i}"));
        let via = self.node();
        self.push(
            &via,
            Command::OpenTurn {
                turn_id: turn_id.clone(),
                session_id: session_id.clone(),
                correlation_id: correlation_id.clone(),
                trust: None,
                summary: Some(format!("turn {i}")),
            },
        );
        let model = Command::RecordModelCall {
            turn_id: turn_id.clone(),
            model: "gpt-x".into(),
            latency_ms: 50 + self.rng.below(500),
            ok: true,
            prompt_tokens: Some(100),
            completion_tokens: Some(20),
        };
        self.push(&via, model);
        let recall = Command::RecordRecall {
            turn_id: turn_id.clone(),
            ns: "agent".into(),
            query: serde_json::json!({"tag": "plan"}),
            hits: vec!["plan".into()],
        };
        self.push(&via, recall);
        let capability = CAPABILITIES[self.rng.below(CAPABILITIES.len() as u64) as usize].to_owned();
        let confirm = self.rng.one_in(mix.confirm_one_in);
        let action_id = ActionId(format!("act_{i}"));
        let verdict = if confirm { Verdict::Confirm } else { Verdict::Allow };
        self.push(
            &via,
            Command::SubmitAction {
                action_id: action_id.clone(),
                turn_id: turn_id.clone(),
                capability,
                args: serde_json::json!({"n": i}),
                idempotency_key: None,
                decision: decision(verdict),
                max_attempts: 2,
                backoff_ms: 10,
                confirm_ttl_ms: 60_000,
                submitted_by: Some("agent-1".into()),
            },
        );
        if confirm {
            self.push(&via, Command::Confirm { action_id: action_id.clone(), approve: true, by: "alice".into() });
        }
        let takeover = self.rng.one_in(mix.takeover_one_in);
        let dead = self.rng.one_in(mix.dead_one_in);
        self.run_action(&action_id, 2, takeover, !dead);
        let mut record = TurnRecord {
            turn_id,
            session_id,
            correlation_id,
            actions: vec![action_id.clone()],
            dead: Vec::new(),
            took_over: takeover,
            confirmed: confirm,
        };
        if dead {
            let mut current = action_id;
            for r in 0..=mix.replays {
                let dlq_id = DlqId(format!("dlq_{}", current.as_str().trim_start_matches("act_")));
                record.dead.push(dlq_id.clone());
                if r == mix.replays {
                    break;
                }
                let new_id = ActionId(format!("act_{i}r{}", r + 1));
                let operator = self.node();
                self.push(
                    &operator,
                    Command::ReplayDlq {
                        dlq_id,
                        new_action_id: new_id.clone(),
                        decision: decision(Verdict::Allow),
                        confirm_ttl_ms: 60_000,
                        principal: Some("ops".into()),
                    },
                );
                // Replays fail again until the last, which is dead-lettered too.
                let takeover = self.rng.one_in(mix.takeover_one_in);
                self.run_action(&new_id, 2, takeover, false);
                record.took_over |= takeover;
                record.actions.push(new_id.clone());
                current = new_id;
            }
        }
        if self.rng.one_in(mix.node_event_one_in) {
            self.node_fact(i);
        }
        if self.keep_records {
            self.records.push(record);
        }
    }

    /// A node-level fact: a leader change, a breaker opening or closing, or
    /// an actor restart.
    fn node_fact(&mut self, i: u64) {
        let node = self.node();
        let data = match self.rng.below(3) {
            0 => EventData::LeaderChanged { leader: node.clone(), term: i, previous: Some("n1".into()) },
            1 => {
                let capability = CAPABILITIES[self.rng.below(4) as usize].to_owned();
                let state = if self.rng.one_in(2) { BreakerState::Open } else { BreakerState::Closed };
                EventData::BreakerChanged { capability, state }
            }
            _ => EventData::ActorRestarted { actor: "executor".into(), recent_restarts: 1 },
        };
        self.push(&node, Command::RecordEvent { correlation_id: CorrelationId(format!("node:{node}")), data });
    }
}
