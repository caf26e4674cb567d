//! `warden status --target URL [--token T]`: the cluster at a glance — leader, term, the
//! health verdict with its reasons, each node (state, role, draining,
//! running attempts, applied index, disk), breakers not closed, the DLQ,
//! each capability's p95 against its SLO with any open SLO advisory, and
//! alerts — coloured when stdout is a terminal. The exit code is the
//! verdict: 0 ok, 2 degraded, 3 critical (1: the node did not answer).

use anyhow::Context;
use serde_json::Value;
use std::io::IsTerminal;
use std::time::Duration;

/// What the exit code says.
pub fn exit_code(verdict: &str) -> i32 {
    match verdict {
        "ok" => 0,
        "degraded" => 2,
        _ => 3,
    }
}

struct Paint(bool);

impl Paint {
    fn code(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn verdict(&self, v: &str) -> String {
        let code = match v {
            "ok" => "1;32",
            "degraded" => "1;33",
            _ => "1;31",
        };
        self.code(code, &v.to_uppercase())
    }
    fn state(&self, s: &str) -> String {
        let code = match s {
            "up" => "32",
            "suspect" => "33",
            _ => "31",
        };
        self.code(code, s)
    }
    fn dim(&self, s: &str) -> String {
        self.code("2", s)
    }
}

async fn get(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    let r = http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = r.status();
    let body: Value = r.json().await.with_context(|| format!("{url} did not answer JSON"))?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(body)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The nodes table, one row per node of the health view; returns the breakers not closed.
fn nodes_table(out: &mut String, p: &Paint, health: &Value, cluster: &Value, leader: &str) -> Vec<String> {
    *out += &format!(
        "\n{:<8}{:<9}{:<10}{:<10}{:>8}{:>10}{:>11}{:>8}\n",
        "node", "state", "raft", "draining", "running", "applied", "disk", "queue"
    );
    let view_of = |name: &str| {
        cluster["nodes"].as_array().and_then(|ns| ns.iter().find(|n| n["name"] == name).cloned()).unwrap_or_default()
    };
    let mut breakers = Vec::new();
    for n in health["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or("?");
        let view = view_of(name);
        let report = &n["report"];
        let mut role = view["raft"]["role"].as_str().unwrap_or("-").to_owned();
        if name == leader {
            role = format!("{role}*");
        }
        let state = n["state"].as_str().unwrap_or("?");
        let state_cell = format!("{:<9}", state);
        *out += &format!(
            "{:<8}{}{:<10}{:<10}{:>8}{:>10}{:>11}{:>8}\n",
            name,
            p.state(&state_cell),
            role,
            if view["draining"] == true { "yes" } else { "no" },
            view["running"].as_u64().unwrap_or(0),
            report["applied_index"].as_u64().map_or("-".into(), |v| v.to_string()),
            report["disk_bytes"].as_u64().map_or("-".into(), bytes),
            report["proposal_queue"].as_u64().map_or("-".into(), |v| v.to_string()),
        );
        for b in report["breakers"].as_array().into_iter().flatten() {
            breakers.push(format!(
                "{} on {name}: {}",
                b["capability"].as_str().unwrap_or("?"),
                b["state"].as_str().unwrap_or("?")
            ));
        }
    }
    breakers
}

/// One line per node: free space against its watermark, the state's size
/// (largest table), the oldest event held, the last snapshot built.
fn storage_lines(p: &Paint, health: &Value) -> String {
    let mut out = String::from("storage\n");
    for n in health["nodes"].as_array().into_iter().flatten() {
        let s = &n["report"]["storage"];
        if s.is_null() {
            continue;
        }
        let free = match s["state"].as_str() {
            Some("full") => p.code("31", "UNDER THE LOW WATERMARK"),
            Some("failed") => p.code("31", "FAILED"),
            _ => "ok".to_owned(),
        };
        let tables = s["size"]["tables"].as_array().cloned().unwrap_or_default();
        let total: u64 = tables.iter().filter_map(|t| t["bytes"].as_u64()).sum();
        let largest = tables.iter().max_by_key(|t| t["bytes"].as_u64().unwrap_or(0));
        let largest = largest.map_or(String::new(), |t| {
            format!(
                " (largest {} {}, {} rows)",
                t["table"].as_str().unwrap_or("?"),
                bytes(t["bytes"].as_u64().unwrap_or(0)),
                t["rows"].as_u64().unwrap_or(0)
            )
        });
        let oldest = s["size"]["oldest_event_ms"].as_u64().map_or("-".into(), |ms| {
            let age_s = warden_actors::clock::wall_ms().saturating_sub(ms) / 1000;
            format!("{} h {} min ago", age_s / 3600, age_s / 60 % 60)
        });
        let archive = &s["size"]["archive"];
        let archive = match archive["segments"].as_u64() {
            Some(n) if n > 0 => format!(
                "; archive {} in {n} segments ({} events)",
                bytes(archive["bytes"].as_u64().unwrap_or(0)),
                archive["events"].as_u64().unwrap_or(0)
            ),
            _ => String::new(),
        };
        let snapshot = match s["last_snapshot"].as_object() {
            Some(snap) => format!(
                "{} in {} ms",
                bytes(snap["bytes"].as_u64().unwrap_or(0)),
                snap["build_ms"].as_u64().unwrap_or(0)
            ),
            None => p.dim("none built since start"),
        };
        out += &format!(
            "  {:<8}{free}: {} free, low watermark {}; state {total_h}{largest}; oldest event {oldest}{archive}; last snapshot {snapshot}\n",
            n["name"].as_str().unwrap_or("?"),
            bytes(s["free_bytes"].as_u64().unwrap_or(0)),
            bytes(s["watermark_bytes"].as_u64().unwrap_or(0)),
            total_h = bytes(total),
        );
    }
    out
}

/// One line per capability that saw attempts: its 5m p95 against the SLO's,
/// its error ratio, and its open advisories (`GET /v1/slo`).
fn slo_table(p: &Paint, slo: Option<&Value>) -> String {
    let Some(slo) = slo else { return format!("slo       {}\n", p.dim("not served by this node")) };
    let mut out = String::new();
    for c in slo["capabilities"].as_array().into_iter().flatten() {
        let windows = c["windows"].as_array().cloned().unwrap_or_default();
        let window = windows.iter().find(|w| w["window"] == "5m").or(windows.first()).cloned().unwrap_or_default();
        let advisories: Vec<String> = c["advisories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["advisory"].as_str().map(str::to_owned))
            .collect();
        if window["count"].as_u64().unwrap_or(0) == 0 && advisories.is_empty() {
            continue;
        }
        let target = c["slo"]["p95_ms"].as_u64().unwrap_or(0);
        let p95 = window["p95_ms"].as_u64();
        let over = p95.is_some_and(|v| v > target);
        let p95_cell = p95.map_or("-".into(), |v| format!("{v} ms"));
        let p95_cell = if over { p.code("31", &p95_cell) } else { p95_cell };
        let flags =
            if advisories.is_empty() { String::new() } else { p.code("33", &format!("  [{}]", advisories.join(", "))) };
        out += &format!(
            "  {:<20} p95 {} / {} ms over {}, errors {:.2} %{}\n",
            c["capability"].as_str().unwrap_or("?"),
            p95_cell,
            target,
            window["window"].as_str().unwrap_or("?"),
            window["error_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            flags
        );
    }
    if out.is_empty() {
        return format!("slo       {}\n", p.dim("no attempts in the windows"));
    }
    format!("slo\n{out}")
}

/// The active policy, and whether every node decides with it.
fn policy_line(p: &Paint, policies: Option<&Value>) -> String {
    let Some(v) = policies else { return format!("policy    {}\n", p.dim("not readable")) };
    let hash = v["active"]["hash"].as_str().unwrap_or_default();
    let short = hash.get(..12).unwrap_or(hash);
    let revision = v["active"]["revision"].as_str().unwrap_or("-");
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let behind: Vec<String> = nodes
        .iter()
        .filter(|n| n["hash"].as_str() != Some(hash))
        .map(|n| {
            format!(
                "{} on {}",
                n["node"].as_str().unwrap_or("?"),
                n["hash"].as_str().map_or("?", |h| h.get(..12).unwrap_or(h))
            )
        })
        .collect();
    let spread = if behind.is_empty() {
        format!("on all {} nodes", nodes.len())
    } else {
        p.code("33", &format!("not yet everywhere: {}", behind.join(", ")))
    };
    format!("policy    {short} ({revision}, by {}) {spread}\n", v["active"]["by"].as_str().unwrap_or("?"))
}

/// The firing alerts, one line each: name, subject, severity, since, summary.
fn alerts_lines(p: &Paint, alerts: Option<&Value>) -> String {
    let Some(alerts) = alerts else { return format!("alerts    {}\n", p.dim("not served by this node")) };
    let firing: Vec<&Value> =
        alerts["alerts"].as_array().into_iter().flatten().filter(|a| a["state"] == "firing").collect();
    if firing.is_empty() {
        return format!("alerts    {}\n", p.dim("none firing"));
    }
    let mut out = format!("alerts    {} firing\n", firing.len());
    for a in firing {
        let subject = a["labels"]["capability"].as_str().or(a["labels"]["node"].as_str()).unwrap_or("");
        let undelivered = a["deliveries"].as_array().into_iter().flatten().filter(|d| d["delivered"] != true).count();
        out += &format!(
            "  {} {} {} [{}] since {}{}: {}\n",
            p.code("31", "✗"),
            a["name"].as_str().unwrap_or("?"),
            subject,
            a["severity"].as_str().unwrap_or("?"),
            a["starts_at"].as_str().unwrap_or("?"),
            if undelivered > 0 { format!(" ({undelivered} deliveries pending)") } else { String::new() },
            a["annotations"]["summary"].as_str().unwrap_or(""),
        );
    }
    out
}

/// Renders the cluster's state; returns the text and the verdict.
pub async fn render(
    target: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    colour: bool,
) -> anyhow::Result<(String, String)> {
    let target = target.trim_end_matches('/');
    let http = crate::auth::client(Duration::from_secs(5), token, ca)?;
    let health = get(&http, format!("{target}/v1/health?scope=cluster")).await?;
    let cluster = get(&http, format!("{target}/v1/cluster")).await?;
    let alerts = match http.get(format!("{target}/v1/alerts")).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    let p = Paint(colour);
    let verdict = health["verdict"].as_str().unwrap_or("critical").to_owned();
    let mut out = String::new();
    let leader = health["leader"].as_str().unwrap_or("none");
    out += &format!("warden cluster via {target}: leader {leader}, term {}\n", health["term"]);
    out += &format!("health  {}\n", p.verdict(&verdict));
    for r in health["reasons"].as_array().into_iter().flatten() {
        let mark = match r["severity"].as_str() {
            Some("critical") => p.code("31", "✗"),
            Some("degraded") => p.code("33", "!"),
            _ => p.dim("·"),
        };
        out += &format!("  {mark} {}\n", r["message"].as_str().unwrap_or_default());
    }
    let breakers = nodes_table(&mut out, &p, &health, &cluster, leader);
    out += &format!("\nbreakers  {}\n", if breakers.is_empty() { p.dim("all closed") } else { breakers.join(", ") });
    let observer = &health["nodes"][0]["report"];
    let (depth, growth) = (observer["dlq_depth"].as_u64().unwrap_or(0), observer["dlq_growth"].as_i64().unwrap_or(0));
    out += &format!("dlq       {depth} pending ({growth:+} in the DLQ window)\n");
    let pending = observer["pending_actions"].as_u64().unwrap_or(0);
    out += &format!("pending   {pending} actions waiting for placement\n");
    out += &storage_lines(&p, &health);
    let policies = match http.get(format!("{target}/v1/policies")).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    out += &policy_line(&p, policies.as_ref());
    let slo = match http.get(format!("{target}/v1/slo")).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    out += &slo_table(&p, slo.as_ref());
    out += &alerts_lines(&p, alerts.as_ref());
    Ok((out, verdict))
}

pub async fn run(target: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> anyhow::Result<i32> {
    let (text, verdict) = render(target, token, ca, std::io::stdout().is_terminal()).await?;
    print!("{text}");
    Ok(exit_code(&verdict))
}
