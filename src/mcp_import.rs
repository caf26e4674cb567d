//! `warden mcp import`: asks an upstream MCP server (over Streamable HTTP,
//! or a command it starts that speaks stdio) for its tools and writes
//! one `[[capability]]` stanza per tool, backed by the `mcp` executor — a
//! capabilities file for the node config's `capabilities = "…"`. Every tool
//! gets the same tier (2 by default, so nothing runs unconfirmed until the
//! operator lowers it); each stanza says what the upstream says about the
//! tool (its description, its read-only and destructive hints) to help
//! choose.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use warden_actors::domain::{Capability, McpUpstream, Tier};
use warden_actors::mcp::{McpClient, McpError};

/// Longest the upstream may take to initialize and list its tools.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The upstream `--url` or the command after `--` names: exactly one.
pub fn upstream(url: Option<String>, command: Vec<String>) -> anyhow::Result<McpUpstream> {
    match (url, command.is_empty()) {
        (Some(url), true) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--url must be the upstream's Streamable HTTP endpoint (http://host:port/mcp), not {url:?}");
            }
            Ok(McpUpstream::Http(url))
        }
        (None, false) if !command[0].trim().is_empty() => Ok(McpUpstream::Stdio(command)),
        (None, false) => bail!("the command after -- starts with an empty program"),
        (Some(_), false) => bail!("name the upstream once: --url, or a stdio command after --, not both"),
        (None, true) => bail!("name the upstream: --url http://host:port/mcp, or a stdio command after --"),
    }
}

/// The upstream's tools, as `tools/list` gives them. A stdio upstream is
/// started for the listing and ends with it.
pub async fn list(upstream: &McpUpstream) -> anyhow::Result<Vec<Value>> {
    let client = McpClient::new(upstream);
    match tokio::time::timeout(LIST_TIMEOUT, client.list_tools()).await {
        Ok(tools) => tools.map_err(|e| match e {
            McpError::Transient(m) | McpError::Refused(m) => anyhow!("listing the tools of {upstream}: {m}"),
        }),
        Err(_) => bail!("{upstream} did not list its tools within {LIST_TIMEOUT:?}"),
    }
}

/// The capabilities file for `tools` of `upstream`: one stanza per tool,
/// named `<prefix><tool name>`, at `tier`. Checked by reading it back as
/// warden's config loader would.
pub fn stanzas(upstream: &McpUpstream, tools: &[Value], tier: Tier, prefix: &str) -> anyhow::Result<String> {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let source = match upstream {
        McpUpstream::Http(url) => format!("url = {}", quote(url)),
        McpUpstream::Stdio(command) => {
            let words: Vec<String> = command.iter().map(|w| quote(w)).collect();
            format!("command = [{}]", words.join(", "))
        }
    };
    let mut out = format!(
        "# Capabilities for the tools of the MCP server {upstream}, written by `warden mcp import`.\n\
         # Every tool is at tier {} until you choose: 0 read-only, 1 reversible, 2 confirmed, 3 forbidden.\n",
        tier as u8
    );
    let mut names = std::collections::BTreeSet::new();
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            bail!("{upstream} listed a tool without a name: {tool}");
        };
        let capability = format!("{prefix}{name}");
        if !names.insert(capability.clone()) {
            bail!("{upstream} listed the tool {name:?} twice");
        }
        out.push('\n');
        if let Some(text) = tool.get("description").and_then(Value::as_str) {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()).take(3) {
                out.push_str(&format!("# {line}\n"));
            }
        }
        let hints = tool.get("annotations").map(hints_of).unwrap_or_default();
        if !hints.is_empty() {
            out.push_str(&format!("# upstream says: {}\n", hints.join(", ")));
        }
        out.push_str(&format!(
            "[[capability]]\nname = {}\ntier = {}\nexecutor = {{ kind = \"mcp\", {source}, tool = {} }}\n",
            quote(&capability),
            tier as u8,
            quote(name)
        ));
    }
    check(&out, upstream, tools.len())?;
    Ok(out)
}

/// `warden mcp import`: lists the tools of `upstream` and writes their
/// stanzas to `out` (a new file: an existing one is never overwritten) or
/// stdout.
pub async fn run(upstream: &McpUpstream, tier: u8, prefix: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let tier = Tier::try_from(tier).map_err(|_| anyhow!("--tier must be 0, 1, 2 or 3, not {tier}"))?;
    if let Some(path) = out.filter(|p| p.exists()) {
        bail!("{} exists; not overwritten (choose another --out, or remove it first)", path.display());
    }
    let tools = list(upstream).await?;
    let text = stanzas(upstream, &tools, tier, prefix)?;
    match out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "{} tools of {upstream} written to {} at tier {}: review each tier, then name the file in the node \
                 config (capabilities = \"{}\")",
                tools.len(),
                path.display(),
                tier as u8,
                path.display()
            );
        }
        None => {
            print!("{text}");
            eprintln!("{} tools of {upstream} at tier {}: review each tier before use", tools.len(), tier as u8);
        }
    }
    Ok(())
}

/// The tool annotations an operator choosing a tier wants to see.
fn hints_of(annotations: &Value) -> Vec<&'static str> {
    let flag = |k: &str| annotations.get(k).and_then(Value::as_bool);
    let mut hints = Vec::new();
    match flag("readOnlyHint") {
        Some(true) => hints.push("read-only"),
        Some(false) => hints.push("has effects"),
        None => {}
    }
    if flag("destructiveHint") == Some(true) {
        hints.push("destructive");
    }
    if flag("idempotentHint") == Some(true) {
        hints.push("idempotent");
    }
    if flag("openWorldHint") == Some(true) {
        hints.push("reaches the outside world");
    }
    hints
}

/// Reads `text` back as a capabilities file and validates every capability.
fn check(text: &str, upstream: &McpUpstream, expected: usize) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        capability: Vec<Capability>,
    }
    let file: File = toml::from_str(text).context("the written stanzas do not read back")?;
    if file.capability.len() != expected {
        bail!("wrote {} capabilities for {expected} tools", file.capability.len());
    }
    for c in &file.capability {
        c.validate()?;
        if c.executor.mcp().map(|(u, _)| u).as_ref() != Some(upstream) {
            bail!("capability {:?} does not name the upstream", c.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_tool_becomes_a_capability_at_the_tier_given_with_its_hints() {
        let tools = [
            json!({"name": "search", "description": "Search the docs.\nSecond line.", "inputSchema": {},
                   "annotations": {"readOnlyHint": true}}),
            json!({"name": "drop \"table\"", "annotations": {"readOnlyHint": false, "destructiveHint": true}}),
        ];
        let http = McpUpstream::Http("http://127.0.0.1:9000/mcp".into());
        let text = stanzas(&http, &tools, Tier::Confirm, "crm.").unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        let caps = value["capability"].as_array().unwrap();
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[0]["name"].as_str(), Some("crm.search"));
        assert_eq!(caps[1]["name"].as_str(), Some("crm.drop \"table\""));
        assert!(caps.iter().all(|c| c["tier"].as_integer() == Some(2)));
        assert_eq!(caps[1]["executor"]["tool"].as_str(), Some("drop \"table\""));
        assert!(
            text.contains("# Search the docs.\n# Second line.\n# upstream says: read-only\n[[capability]]"),
            "{text}"
        );
        assert!(text.contains("# upstream says: has effects, destructive\n"), "{text}");

        let stdio = McpUpstream::Stdio(vec!["python3".into(), "my server.py".into(), "--stdio".into()]);
        let text = stanzas(&stdio, &tools[..1], Tier::Observe, "").unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        let executor = &value["capability"].as_array().unwrap()[0]["executor"];
        let command: Vec<&str> = executor["command"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(command, ["python3", "my server.py", "--stdio"], "{text}");
        assert!(executor.get("url").is_none(), "{text}");
    }

    #[test]
    fn the_upstream_is_a_url_or_a_command_never_both() {
        let http = upstream(Some("http://h:1/mcp".into()), vec![]).unwrap();
        assert_eq!(http, McpUpstream::Http("http://h:1/mcp".into()));
        let stdio = upstream(None, vec!["srv".into(), "-v".into()]).unwrap();
        assert_eq!(stdio, McpUpstream::Stdio(vec!["srv".into(), "-v".into()]));
        let err = |u: Option<&str>, c: &[&str]| {
            let c = c.iter().map(|w| w.to_string()).collect();
            upstream(u.map(str::to_owned), c).unwrap_err().to_string()
        };
        assert!(err(Some("h:1/mcp"), &[]).contains("Streamable HTTP endpoint"));
        assert!(err(Some("http://h/mcp"), &["srv"]).contains("not both"));
        assert!(err(None, &[]).contains("name the upstream"));
        assert!(err(None, &[" "]).contains("empty program"));
    }

    #[test]
    fn a_nameless_or_repeated_tool_is_refused() {
        let url = &McpUpstream::Http("http://h/mcp".into());
        let nameless = stanzas(url, &[json!({"description": "x"})], Tier::Confirm, "").unwrap_err();
        assert!(nameless.to_string().contains("without a name"), "{nameless}");
        let twice = stanzas(url, &[json!({"name": "a"}), json!({"name": "a"})], Tier::Confirm, "").unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
    }
}
