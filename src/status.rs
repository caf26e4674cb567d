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
pub async fn render(target: &str, token: Option<&str>, colour: bool) -> anyhow::Result<(String, String)> {
    let target = target.trim_end_matches('/');
    let http = crate::auth::client(Duration::from_secs(5), token)?;
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
    let slo = match http.get(format!("{target}/v1/slo")).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    out += &slo_table(&p, slo.as_ref());
    out += &alerts_lines(&p, alerts.as_ref());
    Ok((out, verdict))
}

pub async fn run(target: &str, token: Option<&str>) -> anyhow::Result<i32> {
    let (text, verdict) = render(target, token, std::io::stdout().is_terminal()).await?;
    print!("{text}");
    Ok(exit_code(&verdict))
}
