//! Alerts that reach people, across real processes: a 3-node cluster tells a
//! real Alertmanager about a degradation and its recovery; a leader killed
//! between raising and delivering leaves the delivery to its successor, and
//! a webhook receiver counts exactly one state change per delivery id.

mod common;

use common::cluster::{post, Cluster, CLUSTER_WAIT};
use common::receiver::{Alertmanager, HookScript, Webhook};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "test-webhook-secret";

/// A capability whose tool fails on demand, executed on node `c` only, with
/// a breaker that opens after 3 failures and probes again after 300 ms.
const FRAGILE: &str = "[[capability]]\nname = \"fragile.api\"\ntier = 0\nmax_attempts = 1\nnodes = [\"c\"]\n\
                       breaker = { failure_threshold = 3, open_ms = 300 }\n";
/// The same on any node, and a capability that always succeeds.
const FRAGILE_ANYWHERE: &str = "[[capability]]\nname = \"fragile.api\"\ntier = 0\nmax_attempts = 1\n\
                                breaker = { failure_threshold = 3, open_ms = 300 }\n\
                                [[capability]]\nname = \"search.web\"\ntier = 0\n";

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `GET /v1/alerts` through node `i`: the alert named `name`, if listed.
async fn alert(cluster: &Cluster, i: usize, name: &str) -> Option<Value> {
    let view = cluster.get(i, "/v1/alerts").await?;
    view["alerts"].as_array()?.iter().find(|a| a["name"] == name).cloned()
}

/// Submits actions of fragile.api through node `via` (failing or not) until
/// node `via` lists the breaker's alert in `state`.
async fn drive_breaker(cluster: &Cluster, via: usize, turn: &str, fail: bool, state: &str) -> Value {
    let deadline = Instant::now() + CLUSTER_WAIT;
    let args = if fail { json!({"_sim": {"fail": true}}) } else { json!({}) };
    loop {
        if let Some(a) = alert(cluster, via, "WardenBreakerOpen").await.filter(|a| a["state"] == state) {
            return a;
        }
        let body = json!({"turn_id": turn, "capability": "fragile.api", "args": args});
        let (status, reply) = post(format!("{}/v1/actions", cluster.url(via)), body).await;
        assert_eq!(status, 202, "{reply}");
        assert!(Instant::now() < deadline, "the breaker alert never became {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `alert.*` events of node `i`'s timeline.
async fn alert_events(cluster: &Cluster, i: usize) -> Vec<Value> {
    cluster.timeline(i).await.into_iter().filter(|e| e["kind"].as_str().unwrap_or("").starts_with("alert.")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_sees_a_degradation_fire_with_wardens_labels_and_resolve_after_recovery() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(am) = Alertmanager::start(dir.path()).await else { return };
    let config = format!(
        "dashboard_url = \"http://warden.example:8000/\"\n\
         [[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\n[[notify]]\nkind = \"log\"\n{FRAGILE}",
        am.url
    );
    let cluster = Cluster::start(dir.path(), 3, &config);
    cluster.settled().await;
    let turn = cluster.open_turn(0, "alerts").await;

    // Alertmanager is watched from before the degradation, every 5 ms.
    let am_url = am.url.clone();
    let watch = tokio::spawn(async move {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let r = reqwest::get(format!("{am_url}/api/v2/alerts")).await.expect("alertmanager answers");
            let alerts: Vec<Value> = r.json().await.expect("a list of alerts");
            if let Some(a) = alerts.into_iter().find(|a| a["labels"]["alertname"] == "WardenBreakerOpen") {
                return (wall_ms(), a);
            }
            assert!(Instant::now() < deadline, "Alertmanager never listed the alert");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let firing = drive_breaker(&cluster, 0, &turn, true, "firing").await;
    let (seen_ms, in_am) = watch.await.unwrap();
    // Detection: the breaker's event and the alert are one log entry; its time is the alert's start.
    let raised = alert_events(&cluster, 0).await.into_iter().find(|e| e["kind"] == "alert.raised").unwrap();
    let detected_ms = raised["ts"].as_u64().unwrap();
    let visible_after = seen_ms.saturating_sub(detected_ms);
    eprintln!("detection → visible in Alertmanager: {visible_after} ms");
    assert!(visible_after <= 1_000, "visible {visible_after} ms after detection");
    assert_eq!(in_am["status"]["state"], "active", "{in_am}");
    let labels = &in_am["labels"];
    assert_eq!(
        (&labels["capability"], &labels["severity"], &labels["service"]),
        (&json!("fragile.api"), &json!("page"), &json!("warden")),
        "{in_am}"
    );
    assert_eq!(in_am["labels"], firing["labels"], "Alertmanager holds warden's label set");
    let fp = firing["fingerprint"].as_str().unwrap();
    assert_eq!(in_am["generatorURL"], format!("http://warden.example:8000/#alert-{fp}"));
    let annotations = &in_am["annotations"];
    assert!(annotations["summary"].as_str().unwrap().contains("fragile.api"), "{in_am}");
    assert_eq!(annotations["node"], "c", "the figures that raised it: {in_am}");
    assert_eq!(annotations["correlation_id"], "breaker:fragile.api");
    assert_eq!(annotations["dashboard"], in_am["generatorURL"]);

    // `warden status` lists it.
    let (status, _) = warden::status::render(cluster.url(1), None, None, false).await.unwrap();
    assert!(status.contains("alerts    1 firing"), "{status}");
    assert!(status.contains("WardenBreakerOpen fragile.api [page]"), "{status}");

    // Recovery: after the breaker's window a probe succeeds, the breaker closes, the alert resolves.
    let resolved = drive_breaker(&cluster, 1, &turn, false, "resolved").await;
    assert!(resolved["ends_at"].is_string(), "{resolved}");
    let deadline = Instant::now() + CLUSTER_WAIT;
    while am.alerts().await.iter().any(|a| a["labels"]["alertname"] == "WardenBreakerOpen") {
        assert!(Instant::now() < deadline, "Alertmanager still lists the alert as active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both changes reached both channels, each recorded once, through every node's log.
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let a = alert(&cluster, 2, "WardenBreakerOpen").await.unwrap();
        let delivered: BTreeSet<(String, String)> = a["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["delivered"] == true)
            .map(|d| (d["channel"].as_str().unwrap().to_owned(), d["state"].as_str().unwrap().to_owned()))
            .collect();
        if delivered.len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries recorded: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = alert_events(&cluster, 0).await;
    let delivered: Vec<&Value> = events.iter().filter(|e| e["kind"] == "alert.delivered").collect();
    assert_eq!(delivered.len(), 4, "one record per state change and channel: {events:?}");
    let (status, _) = warden::status::render(cluster.url(1), None, None, false).await.unwrap();
    assert!(status.contains("alerts    none firing"), "{status}");
}

/// The webhook refuses while the leader holds a raised alert, the leader is
/// killed, the new one delivers; across every change the receiver counts
/// exactly one per delivery id and every signature checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_delivers_what_the_killed_one_raised_and_each_change_counts_once() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(SECRET, HookScript { refuse: true, ..HookScript::default() }).await;
    let config = format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{FRAGILE}", hook.url);
    let mut cluster = Cluster::start(dir.path(), 3, &config);
    cluster.settled().await;
    // The breaker lives on c: the leader to kill must be another node.
    let (mut leader, term) = cluster.leader_among(&cluster.all(), 0).await;
    if leader == 2 {
        let (status, reply) = post(format!("{}/v1/cluster/leader", cluster.url(2)), json!({"node": "a"})).await;
        assert_eq!(status, 200, "{reply}");
        leader = cluster.leader_among(&[0], term).await.0;
    }
    let survivor = if leader == 0 { 1 } else { 0 };
    let turn = cluster.open_turn(survivor, "alerts").await;
    drive_breaker(&cluster, survivor, &turn, true, "firing").await;
    // Raised, tried by the leader and refused: not delivered.
    let deadline = Instant::now() + CLUSTER_WAIT;
    while hook.received().is_empty() {
        assert!(Instant::now() < deadline, "the leader never tried the webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = alert_events(&cluster, survivor).await;
    assert!(events.iter().all(|e| e["kind"] != "alert.delivered"), "{events:?}");

    cluster.nodes[leader].kill_9();
    hook.script.lock().refuse = false;
    let among: Vec<usize> = cluster.all().into_iter().filter(|i| *i != leader).collect();
    cluster.leader_among(&among, term).await;
    // The old leader's death is itself an alert; recovery resolves the breaker's.
    drive_breaker(&cluster, survivor, &turn, false, "resolved").await;
    cluster.nodes[leader].restart();
    let deadline = Instant::now() + CLUSTER_WAIT;
    let changes = loop {
        // Every state change the log holds, and whether each reached the webhook.
        let events = alert_events(&cluster, survivor).await;
        let mut changes: BTreeMap<String, bool> = BTreeMap::new();
        for e in &events {
            let d = &e["data"];
            let (fp, ep) = (d["fingerprint"].as_str().unwrap(), d["episode"].as_u64().unwrap());
            match e["kind"].as_str().unwrap() {
                "alert.raised" => changes.entry(format!("{fp}-{ep}-firing")).or_default(),
                "alert.resolved" => changes.entry(format!("{fp}-{ep}-resolved")).or_default(),
                _ => {
                    *changes.entry(d["delivery_id"].as_str().unwrap().to_owned()).or_default() = true;
                    continue;
                }
            };
        }
        let names: BTreeSet<&str> =
            events.iter().filter(|e| e["kind"] == "alert.raised").filter_map(|e| e["data"]["name"].as_str()).collect();
        // Breaker fired + resolved, node down fired + resolved (the old leader came back).
        if changes.len() == 4 && changes.values().all(|d| *d) && names.contains("WardenNodeDown") {
            break changes;
        }
        if Instant::now() > deadline {
            for i in &among {
                eprintln!("node {i}: {:?}", cluster.get(*i, "/v1/alerts").await);
            }
            panic!("changes and deliveries: {changes:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let received = hook.received();
    assert!(received.iter().all(|h| h.signed), "every request carries a valid signature");
    let accepted: BTreeSet<&str> = received.iter().filter(|h| h.accepted).map(|h| h.delivery_id.as_str()).collect();
    let expected: BTreeSet<&str> = changes.keys().map(String::as_str).collect();
    assert_eq!(accepted, expected, "the receiver counts exactly one per state change");
    for h in &received {
        assert_eq!(h.body["delivery_id"], h.delivery_id.as_str(), "header and body name the same change");
        assert_eq!(h.body["version"], 1);
    }
    let refused = received.iter().filter(|h| !h.accepted).count();
    let ids: Vec<(&str, bool)> = received.iter().map(|h| (h.delivery_id.as_str(), h.accepted)).collect();
    eprintln!("{} requests ({refused} refused) for {} changes: {ids:?}", received.len(), changes.len());
}

/// A webhook that answers 500 twice, then takes longer than the request
/// timeout (it answers after 11 s), then answers: the firing change is tried
/// until it gets through, the pipeline keeps running meanwhile, and nothing
/// is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_until_it_answers_without_holding_up_the_pipeline() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let script = HookScript { fail_first: 2, hold_next: 1, hold: Duration::from_secs(11), ..HookScript::default() };
    let hook = Webhook::start(SECRET, script).await;
    let config = format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n[[notify]]\nkind = \"log\"\n{FRAGILE_ANYWHERE}",
        hook.url
    );
    let cluster = Cluster::start(dir.path(), 1, &config);
    cluster.settled().await;
    let turn = cluster.open_turn(0, "alerts").await;
    drive_breaker(&cluster, 0, &turn, true, "firing").await;

    // While the receiver holds the third try: the failures are reported, the
    // log channel has delivered, and actions still run to the end.
    let deadline = Instant::now() + CLUSTER_WAIT;
    let webhook = |a: &Value| a["deliveries"].as_array().unwrap().iter().find(|d| d["channel"] == "webhook").cloned();
    loop {
        let a = alert(&cluster, 0, "WardenBreakerOpen").await.unwrap();
        let d = webhook(&a).unwrap();
        if hook.script.lock().requests == 3 && d["attempts"] == 2 {
            assert_eq!(
                (&d["delivered"], &d["last_error"]),
                (&json!(false), &json!("answered 500 Internal Server Error"))
            );
            let log = a["deliveries"].as_array().unwrap().iter().find(|d| d["channel"] == "log").cloned().unwrap();
            assert_eq!(log["delivered"], true, "one channel's trouble is not another's: {a}");
            break;
        }
        assert!(Instant::now() < deadline, "never saw the third try held: {a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"turn_id": turn, "capability": "search.web", "args": {"q": i}});
        let (status, reply) = post(format!("{}/v1/actions", cluster.url(0)), body).await;
        assert_eq!(status, 202, "{reply}");
        ids.push(reply["action_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let action = cluster.get(0, &format!("/v1/actions/{id}")).await.unwrap_or_default();
            if action["state"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "action {id} stuck while the webhook hangs: {action}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        webhook(&alert(&cluster, 0, "WardenBreakerOpen").await.unwrap()).unwrap()["delivered"] == false,
        "the actions ran while the delivery was still held"
    );

    // The fourth try gets through; the recovery goes through at once.
    let resolved = drive_breaker(&cluster, 0, &turn, false, "resolved").await;
    let deadline = Instant::now() + CLUSTER_WAIT;
    let deliveries = loop {
        let events = alert_events(&cluster, 0).await;
        let delivered: Vec<Value> =
            events.into_iter().filter(|e| e["kind"] == "alert.delivered").map(|e| e["data"].clone()).collect();
        if delivered.iter().filter(|d| d["channel"] == "webhook").count() == 2 {
            break delivered;
        }
        assert!(Instant::now() < deadline, "webhook deliveries recorded: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fp = resolved["fingerprint"].as_str().unwrap();
    let attempts = |state: &str| {
        deliveries.iter().find(|d| d["channel"] == "webhook" && d["state"] == state).map(|d| d["attempts"].clone())
    };
    assert_eq!(attempts("firing"), Some(json!(4)), "two 500s, one timeout, then through: {deliveries:?}");
    assert_eq!(attempts("resolved"), Some(json!(1)));
    let received = hook.received();
    let accepted: Vec<&str> = received.iter().filter(|h| h.accepted).map(|h| h.delivery_id.as_str()).collect();
    assert_eq!(accepted, [format!("{fp}-1-firing"), format!("{fp}-1-resolved")], "each change once, in order");
    assert!(received.iter().all(|h| h.signed));
    assert!(received[..4].iter().all(|h| h.delivery_id == format!("{fp}-1-firing")), "retries carry the same id");
}

/// With two of three nodes gone there is no leader and nothing reaches the
/// log: the survivor tells its channels itself, and that it is over once a
/// leader is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_leader_says_so_outside_the_log_and_when_it_is_over() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(SECRET, HookScript::default()).await;
    let config = format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n", hook.url);
    let mut cluster = Cluster::start(dir.path(), 3, &config);
    cluster.settled().await;
    cluster.nodes[1].kill_9();
    cluster.nodes[2].kill_9();
    let no_leader = |state: &'static str| {
        let hook = hook.clone();
        move || {
            hook.received()
                .into_iter()
                .find(|h| h.body["alert"]["name"] == "WardenNoLeader" && h.body["alert"]["state"] == state)
        }
    };
    // NO_LEADER_AFTER (10 s) after the election timeout, plus a margin.
    let deadline = Instant::now() + Duration::from_secs(40);
    let firing = loop {
        if let Some(h) = no_leader("firing")() {
            break h;
        }
        assert!(Instant::now() < deadline, "no WardenNoLeader within 40 s: {:?}", hook.received());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(firing.body["alert"]["labels"]["node"], "a", "{:?}", firing.body);
    assert!(firing.signed);
    cluster.nodes[1].restart();
    cluster.nodes[2].restart();
    let deadline = Instant::now() + Duration::from_secs(40);
    let resolved = loop {
        if let Some(h) = no_leader("resolved")() {
            break h;
        }
        assert!(Instant::now() < deadline, "no resolution within 40 s of the quorum's return");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolved.body["alert"]["fingerprint"], firing.body["alert"]["fingerprint"]);
    assert_ne!(resolved.delivery_id, firing.delivery_id);
    let received = hook.received();
    let from_a = received.iter().filter(|h| h.body["alert"]["name"] == "WardenNoLeader");
    let states: Vec<String> = from_a.map(|h| h.body["alert"]["state"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(states, ["firing", "resolved"], "once each");
}
