//! Node configuration: the TOML file of contract.md, command-line overrides,
//! and defaults that work with no file at all (the built-in demo catalog).

use crate::auth::Tokens;
use crate::catalog::demo_catalog;
use crate::cluster::{load_cookie, ClusterSettings};
use crate::http::serve::Limits;
use crate::tls::{NodeTls, TlsFiles};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_actors::authz::{Bundle, EngineKind, PolicyConfig, DEFAULT_EVAL_TIMEOUT};
use warden_actors::config::{ChannelConfig, ChannelKind, NotifyConfig, SloConfig, DEFAULT_CONFIRM_TTL_MS};
use warden_actors::config::{RetentionConfig, StorageConfig};
use warden_actors::consensus::RaftSettings;
use warden_actors::disk::Watermark;
use warden_actors::domain::{parse_window, Capability};
use warden_actors::health::HealthConfig;
use warden_actors::registry::RegistryConfig;
use warden_actors::NodeConfig;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8000";

/// The node config file, as written by operators.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub cluster_addr: Option<SocketAddr>,
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    pub cookie_file: Option<PathBuf>,
    /// Connect to the peers of peers (default true); off, only to seeds and to whoever dials.
    pub cluster_transitive: Option<bool>,
    /// A separate file of `[[capability]]` tables, relative to this file.
    pub capabilities: Option<PathBuf>,
    /// A policy bundle directory (relative to this file); without it, the
    /// bundle embedded in the binary (the repository's `policies/`).
    pub policies_dir: Option<PathBuf>,
    /// `"rego"` (default): the bundle decides; `"native"`: the 4-tier rules
    /// compiled into warden decide and the bundle is not read.
    pub policy_engine: Option<EngineKind>,
    /// Longest one policy evaluation may run before the action is denied
    /// (`policy_timeout`); default 10.
    pub policy_timeout_ms: Option<u64>,
    pub confirm_ttl_ms: Option<u64>,
    pub sim_seed: Option<u64>,
    /// Failure detector: heartbeat period, and silences that make a peer suspect / down.
    pub heartbeat_ms: Option<u64>,
    pub suspect_after_ms: Option<u64>,
    pub down_after_ms: Option<u64>,
    /// The initial voters of a new cluster, by name (each of them lists the
    /// same). Without it, a node with seeds waits to be added by a leader,
    /// and a node without seeds founds a cluster of its own.
    pub bootstrap: Option<Vec<String>>,
    #[serde(default)]
    pub raft: RaftFile,
    #[serde(default)]
    pub health: HealthFile,
    #[serde(default)]
    pub storage: StorageFile,
    #[serde(default)]
    pub retention: RetentionFile,
    #[serde(default)]
    pub slo: SloFile,
    /// Where alerts go: one table per channel.
    #[serde(default)]
    pub notify: Vec<NotifyFile>,
    /// The dashboard's address as people reach it (alerts link to it);
    /// default `http://<http_addr>/`.
    pub dashboard_url: Option<String>,
    /// Lets `args._sim.panic_attempts` crash the Executors actor: for tests of
    /// supervision and health only, never in production.
    pub fault_injection: Option<bool>,
    /// Bearer tokens (`warden token create`), relative to this file.
    pub token_file: Option<PathBuf>,
    /// `"tokens"` (the default when `token_file` is set) or `"none"`.
    pub auth: Option<AuthMode>,
    /// `/metrics` without a token (default true); false: operators only.
    pub metrics_open: Option<bool>,
    #[serde(default)]
    pub http: HttpFile,
    /// PEM certificate (chain) and key: the API is served over HTTPS, and the
    /// cluster transport over TLS when `tls_ca` is set too. Relative to this file.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signs every cluster peer's certificate (mutual TLS on the
    /// cluster transport). Required with `tls_cert` and `cluster_addr`.
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub capability: Vec<Capability>,
}

/// `auth = ...`: whether requests need a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Tokens,
    None,
}

/// Who the HTTP API serves.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Requests carry a token of the token file.
    Tokens(Arc<Tokens>),
    /// Anyone who can reach the address may do anything: `explicit` when the
    /// config says `auth = "none"`, else because no token file was given and
    /// the address is loopback.
    Open { explicit: bool },
}

/// Access control of the HTTP API.
#[derive(Clone, Debug)]
pub struct AccessSettings {
    pub auth: Auth,
    pub metrics_open: bool,
}

impl AccessSettings {
    /// Decides how `http_addr` is served from the config's `token_file` and `auth`.
    pub fn decide(
        http_addr: SocketAddr,
        token_file: Option<&Path>,
        auth: Option<AuthMode>,
        metrics_open: Option<bool>,
    ) -> anyhow::Result<AccessSettings> {
        let auth = match (auth, token_file) {
            (Some(AuthMode::None), Some(f)) => {
                bail!("auth = \"none\" and token_file = {:?} contradict each other: drop one", f.display())
            }
            (Some(AuthMode::None), None) => Auth::Open { explicit: true },
            (Some(AuthMode::Tokens), None) => bail!("auth = \"tokens\" needs a token_file (see `warden token create`)"),
            (_, Some(f)) => Auth::Tokens(Arc::new(Tokens::load(f)?)),
            (None, None) if http_addr.ip().is_loopback() => Auth::Open { explicit: false },
            (None, None) => bail!(
                "http_addr {http_addr} is not loopback and no token_file is set: anyone who can reach it could do \
                 anything. Set token_file (see `warden token create`), or auth = \"none\" to serve it open anyway"
            ),
        };
        Ok(AccessSettings { auth, metrics_open: metrics_open.unwrap_or(true) })
    }
}

/// `[[notify]]`: one notification channel (docs/operations.md, "Alerts").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub kind: ChannelKind,
    /// The webhook's URL, or Alertmanager's base URL (`http://host:9093`).
    pub url: Option<String>,
    /// The webhook's HMAC-SHA256 key.
    pub secret: Option<String>,
}

/// The channels of `[[notify]]`, named `<kind>` (`<kind>-2`, … for more of one kind).
fn notify_config(files: &[NotifyFile], dashboard_url: String) -> anyhow::Result<NotifyConfig> {
    let mut channels: Vec<ChannelConfig> = Vec::new();
    for f in files {
        let kind_name = match f.kind {
            ChannelKind::Log => "log",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Alertmanager => "alertmanager",
        };
        let url_ok = f.url.as_deref().is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        match f.kind {
            ChannelKind::Log if f.url.is_some() || f.secret.is_some() => {
                bail!("[[notify]] kind = \"log\" takes no url or secret")
            }
            ChannelKind::Webhook if !url_ok || f.secret.as_deref().is_none_or(str::is_empty) => {
                bail!("[[notify]] kind = \"webhook\" needs an http(s) url and a secret (its HMAC key)")
            }
            ChannelKind::Alertmanager if !url_ok => {
                bail!("[[notify]] kind = \"alertmanager\" needs url = \"http://host:9093\"")
            }
            _ => {}
        }
        let n = channels.iter().filter(|c| c.kind == f.kind).count();
        let name = if n == 0 { kind_name.to_owned() } else { format!("{kind_name}-{}", n + 1) };
        channels.push(ChannelConfig { name, kind: f.kind, url: f.url.clone(), secret: f.secret.clone() });
    }
    Ok(NotifyConfig { channels, dashboard_url, ..NotifyConfig::default() })
}

/// `[slo]`: the SloMonitor's ring, windows and detectors (docs/operations.md,
/// "SLO advisories"). Durations are window names: `10s`, `5m`, `1h`, `30d`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    /// Off: attempts are not recorded (for measuring the monitor's cost).
    pub enabled: Option<bool>,
    pub slot: Option<String>,
    pub keep: Option<String>,
    pub coarse_slot: Option<String>,
    pub period: Option<String>,
    pub windows: Option<Vec<String>>,
    pub trend_window: Option<String>,
    pub trend_span: Option<String>,
    pub trend_min_points: Option<usize>,
    pub horizon: Option<String>,
    pub min_samples: Option<u64>,
    pub hysteresis: Option<f64>,
    pub breach_window: Option<String>,
}

fn slo_config(f: &SloFile) -> anyhow::Result<SloConfig> {
    let d = SloConfig::default();
    let window = |name: &str, v: &Option<String>, default: Duration| -> anyhow::Result<Duration> {
        match v {
            None => Ok(default),
            Some(s) => parse_window(s)
                .map(Duration::from_millis)
                .ok_or_else(|| anyhow::anyhow!("slo.{name}: {s:?} is not a window like \"5m\"")),
        }
    };
    let windows = match &f.windows {
        None => d.windows.clone(),
        Some(ws) => ws.iter().map(|w| window("windows", &Some(w.clone()), Duration::ZERO)).collect::<Result<_, _>>()?,
    };
    let c = SloConfig {
        enabled: f.enabled.unwrap_or(d.enabled),
        slot: window("slot", &f.slot, d.slot)?,
        keep: window("keep", &f.keep, d.keep)?,
        coarse_slot: window("coarse_slot", &f.coarse_slot, d.coarse_slot)?,
        period: window("period", &f.period, d.period)?,
        windows,
        trend_window: window("trend_window", &f.trend_window, d.trend_window)?,
        trend_span: window("trend_span", &f.trend_span, d.trend_span)?,
        trend_min_points: f.trend_min_points.unwrap_or(d.trend_min_points),
        horizon: window("horizon", &f.horizon, d.horizon)?,
        min_samples: f.min_samples.unwrap_or(d.min_samples),
        hysteresis: f.hysteresis.unwrap_or(d.hysteresis),
        breach_window: window("breach_window", &f.breach_window, d.breach_window)?,
    };
    if c.coarse_slot < c.slot || c.keep < c.slot || c.trend_min_points < 2 || !(0.0..1.0).contains(&c.hysteresis) {
        bail!("slo: coarse_slot and keep must be at least one slot, trend_min_points at least 2, hysteresis within [0, 1)");
    }
    Ok(c)
}

/// `[health]`: what the cluster verdict counts as unhealthy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// Restarts of one actor counted over this window…
    pub restart_window_ms: Option<u64>,
    /// …and this many make a restart loop.
    pub restart_loop: Option<u32>,
    /// A node this many log entries behind the most advanced one lags.
    pub lag_entries: Option<u64>,
    /// The DLQ grows when it is deeper than this long ago.
    pub dlq_window_ms: Option<u64>,
}

/// `[storage]`: the data dir's free-space low watermark (docs/operations.md,
/// "Disk full"): new work is refused under the smaller of the two.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// Default 1 GiB.
    pub min_free_bytes: Option<u64>,
    /// Of the file system's size; default 5.
    pub min_free_percent: Option<u64>,
    /// How often free space is read; default 1000.
    pub check_every_ms: Option<u64>,
    /// How often the state's tables are measured; default 30000.
    pub size_every_ms: Option<u64>,
    /// redb's page cache for the node's files, in MiB; default 256.
    pub cache_mb: Option<u64>,
}

/// `[retention]`: how long events and finished work stay in the replicated
/// state before they go to the node's archive (docs/operations.md,
/// "Retention and archive").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Events older than this expire, with the finished actions and turns
    /// they recorded; default 604 800 000 (7 days); 0 keeps everything.
    pub events_ms: Option<u64>,
    /// Sessions idle longer than this expire once none of their turns is
    /// retained (never a low-trust one); default 2 592 000 000 (30 days);
    /// 0 keeps them.
    pub sessions_ms: Option<u64>,
    /// How often the leader looks for what expired; default 60 000.
    pub every_ms: Option<u64>,
    /// Events one expiry command removes at most; default 20 000.
    pub batch: Option<u64>,
}

/// Bounds of `[retention] batch`: one command, one archive segment, one
/// transaction on the log's thread.
const MAX_EXPIRE_BATCH: u64 = 100_000;

fn retention_config(f: &RetentionFile) -> anyhow::Result<RetentionConfig> {
    let d = RetentionConfig::default();
    let keep = |ms: Option<u64>, default: Option<Duration>| match ms {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => default,
    };
    let c = RetentionConfig {
        events: keep(f.events_ms, d.events),
        sessions: keep(f.sessions_ms, d.sessions),
        every: ms(f.every_ms, d.every),
        batch: f.batch.unwrap_or(d.batch),
    };
    if c.every.is_zero() || !(1..=MAX_EXPIRE_BATCH).contains(&c.batch) {
        bail!("retention.every_ms must be at least 1 and retention.batch within 1..={MAX_EXPIRE_BATCH}");
    }
    Ok(c)
}

/// Bounds of `[storage] cache_mb`: under 8 MiB redb re-reads its pages on
/// every transaction; 64 GiB is past any machine warden runs on.
const MIN_CACHE_MB: u64 = 8;
const MAX_CACHE_MB: u64 = 64 << 10;

fn storage_config(storage: &StorageFile) -> anyhow::Result<StorageConfig> {
    let d = StorageConfig::default();
    let c = StorageConfig {
        watermark: Watermark {
            min_free_bytes: storage.min_free_bytes.unwrap_or(d.watermark.min_free_bytes),
            min_free_percent: storage.min_free_percent.unwrap_or(d.watermark.min_free_percent),
        },
        check_every: ms(storage.check_every_ms, d.check_every),
        size_every: ms(storage.size_every_ms, d.size_every),
        cache_bytes: match storage.cache_mb {
            Some(mb) if (MIN_CACHE_MB..=MAX_CACHE_MB).contains(&mb) => (mb as usize) << 20,
            Some(mb) => bail!("storage.cache_mb must be within {MIN_CACHE_MB}..={MAX_CACHE_MB}, not {mb}"),
            None => d.cache_bytes,
        },
    };
    if c.watermark.min_free_percent > 100 || c.check_every.is_zero() || c.size_every.is_zero() {
        bail!("storage.min_free_percent must be at most 100, storage.check_every_ms and size_every_ms at least 1");
    }
    Ok(c)
}

/// `[http]`: the HTTP server's connection limits (`http::serve`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// A connection's request head must arrive within this long (default 10 000).
    pub header_read_timeout_ms: Option<u64>,
    /// Open connections at once (default 16 384).
    pub max_connections: Option<usize>,
}

/// `[raft]`: election timing, snapshots, joining.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftFile {
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot (followers slightly behind catch up from them).
    pub keep_behind_snapshot: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    /// The leader adds nodes that are up and have no log yet.
    pub auto_join: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilityFile {
    #[serde(default)]
    capability: Vec<Capability>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub cluster_addr: Option<SocketAddr>,
    /// Replaces the file's seeds when not empty.
    pub seeds: Vec<SocketAddr>,
    pub cookie_file: Option<PathBuf>,
    /// Replaces the file's bootstrap voters when set.
    pub bootstrap: Option<Vec<String>>,
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

/// Everything `warden node` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: NodeConfig,
    pub http_addr: SocketAddr,
    /// Set when the node joins a cluster (`cluster_addr` given).
    pub cluster: Option<ClusterSettings>,
    pub access: AccessSettings,
    pub http_limits: Limits,
    /// HTTPS (and TLS on the cluster transport when it has a CA).
    pub tls: Option<NodeTls>,
}

/// `tls_cert`, `tls_key`, `tls_ca` (already resolved), loaded and checked.
fn tls_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    cluster: bool,
) -> anyhow::Result<Option<NodeTls>> {
    let (cert, key) = match (cert, key) {
        (None, None) if ca.is_none() => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => bail!("tls_cert and tls_key go together (and tls_ca needs both)"),
    };
    if cluster && ca.is_none() {
        bail!(
            "tls_cert with cluster_addr needs tls_ca: the CA that signs the peers' certificates \
             (the cluster transport runs TLS too, never plain next to HTTPS)"
        );
    }
    Ok(Some(TlsFiles { cert, key, ca }.load()?))
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config in {}", path.display()))
}

/// A duration in ms from the file, or the default.
fn ms(v: Option<u64>, default: Duration) -> Duration {
    v.map_or(default, Duration::from_millis)
}

/// Failure detection from `[heartbeat_ms, suspect_after_ms, down_after_ms]`.
fn registry_config([heartbeat, suspect_after, down_after]: [Option<u64>; 3]) -> anyhow::Result<RegistryConfig> {
    let d = RegistryConfig::default();
    let r = RegistryConfig {
        heartbeat: ms(heartbeat, d.heartbeat),
        suspect_after: ms(suspect_after, d.suspect_after),
        down_after: ms(down_after, d.down_after),
    };
    if r.heartbeat.is_zero() || r.suspect_after <= r.heartbeat || r.down_after <= r.suspect_after {
        bail!("need 0 < heartbeat_ms < suspect_after_ms < down_after_ms");
    }
    Ok(r)
}

/// `[raft]` timing; `bootstrap` is decided by `Settings::load`.
fn raft_settings(raft: &RaftFile) -> anyhow::Result<RaftSettings> {
    let d = RaftSettings::default();
    let r = RaftSettings {
        bootstrap: None,
        heartbeat: ms(raft.heartbeat_ms, d.heartbeat),
        election_timeout: (
            ms(raft.election_timeout_min_ms, d.election_timeout.0),
            ms(raft.election_timeout_max_ms, d.election_timeout.1),
        ),
        snapshot_every: raft.snapshot_every.unwrap_or(d.snapshot_every),
        keep_behind_snapshot: raft.keep_behind_snapshot.unwrap_or(d.keep_behind_snapshot),
        write_timeout: ms(raft.write_timeout_ms, d.write_timeout),
        auto_join: raft.auto_join.unwrap_or(d.auto_join),
    };
    if r.heartbeat.is_zero() || r.election_timeout.0 <= r.heartbeat * 2 || r.election_timeout.1 <= r.election_timeout.0
    {
        bail!("need 0 < 2 × raft.heartbeat_ms < raft.election_timeout_min_ms < raft.election_timeout_max_ms");
    }
    if r.snapshot_every == 0 {
        bail!("raft.snapshot_every must be at least 1");
    }
    Ok(r)
}

fn health_config(health: &HealthFile) -> anyhow::Result<HealthConfig> {
    let h = HealthConfig::default();
    let c = HealthConfig {
        restart_window: ms(health.restart_window_ms, h.restart_window),
        restart_loop: health.restart_loop.unwrap_or(h.restart_loop),
        lag_entries: health.lag_entries.unwrap_or(h.lag_entries),
        dlq_window: ms(health.dlq_window_ms, h.dlq_window),
        report_every: h.report_every,
    };
    if c.restart_loop == 0 || c.restart_window.is_zero() {
        bail!("health.restart_loop and health.restart_window_ms must be at least 1");
    }
    Ok(c)
}

/// The policy: engine, bundle (read now, compiled when the node starts), time limit.
fn policy_config(file: &ConfigFile, base: &Path) -> anyhow::Result<PolicyConfig> {
    let engine = file.policy_engine.unwrap_or_default();
    let bundle = match &file.policies_dir {
        Some(dir) if engine == EngineKind::Rego => Bundle::load_dir(&base.join(dir))?,
        _ => Bundle::embedded(),
    };
    let eval_timeout = ms(file.policy_timeout_ms, DEFAULT_EVAL_TIMEOUT);
    if eval_timeout.is_zero() {
        bail!("policy_timeout_ms must be at least 1");
    }
    Ok(PolicyConfig { engine, bundle, eval_timeout })
}

impl Settings {
    /// Loads `path` (if any), applies `overrides`, and fills in defaults.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<Settings> {
        let file: ConfigFile = match path {
            Some(p) => read_toml(p)?,
            None => ConfigFile::default(),
        };
        let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
        let policy = policy_config(&file, base)?;
        let mut capabilities = file.capability;
        if let Some(extra) = &file.capabilities {
            let extra: CapabilityFile = read_toml(&base.join(extra))?;
            capabilities.extend(extra.capability);
        }
        if capabilities.is_empty() {
            capabilities = demo_catalog();
        }
        let name = overrides.name.or(file.name).unwrap_or_else(|| "a".to_owned());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("node name must be letters, digits, - or _; got {name:?}");
        }
        let data_dir = overrides.data_dir.or(file.data_dir).unwrap_or_else(|| Path::new(".warden").join(&name));
        let http_addr = match overrides.http_addr.or(file.http_addr) {
            Some(a) => a,
            None => DEFAULT_HTTP_ADDR.parse()?,
        };
        let mut node = NodeConfig::new(&name, data_dir, capabilities);
        node.confirm_ttl_ms = file.confirm_ttl_ms.unwrap_or(DEFAULT_CONFIRM_TTL_MS);
        node.sim_seed = file.sim_seed.unwrap_or(0);
        node.registry = registry_config([file.heartbeat_ms, file.suspect_after_ms, file.down_after_ms])?;
        node.raft = raft_settings(&file.raft)?;
        node.health = health_config(&file.health)?;
        node.storage = storage_config(&file.storage)?;
        node.retention = retention_config(&file.retention)?;
        node.slo = slo_config(&file.slo)?;
        let dashboard_url = file.dashboard_url.clone().unwrap_or_else(|| format!("http://{http_addr}/"));
        node.notify = notify_config(&file.notify, dashboard_url)?;
        node.fault_injection = file.fault_injection.unwrap_or(false);
        node.policy = policy;
        warden_actors::runtime::Catalog::new(node.capabilities.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rel = |f: PathBuf| base.join(f);
        let cluster_addr = overrides.cluster_addr.or(file.cluster_addr);
        let tls = tls_settings(
            overrides.tls_cert.or_else(|| file.tls_cert.map(rel)),
            overrides.tls_key.or_else(|| file.tls_key.map(rel)),
            overrides.tls_ca.or_else(|| file.tls_ca.map(rel)),
            cluster_addr.is_some(),
        )?;
        let cluster_tls = tls.as_ref().and_then(|t| t.cluster.clone());
        let cluster = match cluster_addr {
            None => None,
            Some(addr) => {
                let cookie_file = overrides.cookie_file.or_else(|| file.cookie_file.map(|f| base.join(f)));
                let seeds = if overrides.seeds.is_empty() { file.seeds } else { overrides.seeds };
                let cookie = load_cookie(cookie_file.as_deref())?;
                // ractor_cluster dials peers of peers over plain TCP only: with TLS a node dials its seeds.
                let transitive = match (file.cluster_transitive, &cluster_tls) {
                    (Some(true), Some(_)) => bail!(
                        "cluster_transitive = true cannot be used with TLS (peers of peers would be dialled in \
                         plain TCP): list every other node as a seed instead"
                    ),
                    (t, tls) => t.unwrap_or(tls.is_none()),
                };
                Some(ClusterSettings { addr, seeds, cookie, transitive, tls: cluster_tls })
            }
        };
        let has_seeds = cluster.as_ref().is_some_and(|c| !c.seeds.is_empty());
        node.raft.bootstrap = match overrides.bootstrap.or(file.bootstrap) {
            Some(voters) => {
                if !voters.contains(&name) {
                    bail!("bootstrap voters {voters:?} must include this node ({name})");
                }
                Some(voters)
            }
            None if has_seeds => None,
            None => Some(Vec::new()),
        };
        let token_file = overrides.token_file.or_else(|| file.token_file.map(|f| base.join(f)));
        let access = AccessSettings::decide(http_addr, token_file.as_deref(), file.auth, file.metrics_open)?;
        let d = Limits::default();
        let http_limits = Limits {
            header_read_timeout: ms(file.http.header_read_timeout_ms, d.header_read_timeout),
            max_connections: file.http.max_connections.unwrap_or(d.max_connections),
        };
        if http_limits.header_read_timeout.is_zero() || http_limits.max_connections == 0 {
            bail!("http.header_read_timeout_ms and http.max_connections must be at least 1");
        }
        Ok(Settings { node, http_addr, cluster, access, http_limits, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_actors::domain::{ExecutorSpec, Tier};

    #[test]
    fn notify_tables_become_named_channels_and_a_webhook_needs_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let channels = "[[notify]]\nkind = \"log\"\n\
                        [[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"s\"\n\
                        [[notify]]\nkind = \"webhook\"\nurl = \"https://x/h\"\nsecret = \"t\"\n\
                        [[notify]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n";
        std::fs::write(&path, channels).unwrap();
        let s = Settings::load(Some(&path), Overrides::default()).unwrap();
        let names: Vec<&str> = s.node.notify.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["log", "webhook", "webhook-2", "alertmanager"]);
        assert_eq!(s.node.notify.dashboard_url, "http://127.0.0.1:8000/");
        std::fs::write(&path, "[[notify]]\nkind = \"webhook\"\nurl = \"http://h\"\n").unwrap();
        let err = Settings::load(Some(&path), Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("secret"), "{err}");
        std::fs::write(&path, "[[notify]]\nkind = \"pager\"\n").unwrap();
        assert!(Settings::load(Some(&path), Overrides::default()).is_err());
    }

    #[test]
    fn no_file_means_the_demo_catalog_on_port_8000() {
        let s = Settings::load(None, Overrides::default()).unwrap();
        assert_eq!(s.http_addr.port(), 8000);
        let tiers: Vec<Tier> = s.node.capabilities.iter().map(|c| c.tier).collect();
        for t in [Tier::Observe, Tier::Reversible, Tier::Confirm, Tier::Forbidden] {
            assert!(tiers.contains(&t), "demo catalog lacks {t:?}");
        }
    }

    #[test]
    fn the_contract_example_parses_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            r#"
name = "b"
data_dir = "data/b"
http_addr = "127.0.0.1:8100"
cluster_addr = "127.0.0.1:7400"
seeds = ["127.0.0.1:7401"]
capabilities = "caps.toml"

[[capability]]
name = "email.send"
tier = 2
amount_limit = 500
timeout_ms = 5000
max_attempts = 3
backoff_ms = 200
slo = { p95_ms = 800, error_budget = 0.01, windows = ["1m", "15m"] }
breaker = { failure_threshold = 5, open_ms = 10000 }
executor = { kind = "sim", latency_ms = 20, jitter_ms = 5, fail_rate = 0.0, ramp = { latency_ms_per_min = 30, after_ms = 60000 } }

[slo]
period = "7d"
horizon = "15m"
windows = ["1m", "1h"]
"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("caps.toml"),
            "[[capability]]\nname = \"crm\"\ntier = 1\nexecutor = { kind = \"http\", url = \"http://127.0.0.1:9100/crm\" }\n",
        )
        .unwrap();
        let overrides = Overrides { http_addr: Some("127.0.0.1:9999".parse().unwrap()), ..Default::default() };
        std::fs::write(dir.path().join("cookie"), "0123456789abcdef-secret\n").unwrap();
        let overrides = Overrides { cookie_file: Some(dir.path().join("cookie")), ..overrides };
        let s = Settings::load(Some(&path), overrides).unwrap();
        let cluster = s.cluster.expect("cluster_addr given");
        assert_eq!((cluster.cookie.as_str(), cluster.seeds.len()), ("0123456789abcdef-secret", 1));
        assert_eq!(s.node.name, "b");
        assert_eq!(s.http_addr.port(), 9999);
        assert_eq!(s.node.capabilities.len(), 2);
        assert_eq!(s.node.capabilities[0].amount_limit, Some(500.0));
        assert_eq!(s.node.capabilities[0].tier, Tier::Confirm);
        assert!(matches!(&s.node.capabilities[1].executor, ExecutorSpec::Http { url } if url.ends_with("/crm")));
        assert_eq!(s.node.capabilities[0].slo.windows, ["1m", "15m"]);
        let ExecutorSpec::Sim { ramp, .. } = &s.node.capabilities[0].executor else { panic!("a sim executor") };
        assert_eq!((ramp.latency_ms_per_min, ramp.after_ms), (30.0, 60_000));
        assert_eq!(s.node.slo.period, Duration::from_secs(7 * 86_400));
        assert_eq!(s.node.slo.horizon, Duration::from_secs(15 * 60));
        assert_eq!(s.node.slo.windows, [Duration::from_secs(60), Duration::from_secs(3_600)]);
        assert_eq!(s.node.slo.slot, SloConfig::default().slot, "unset keys keep their defaults");
    }

    #[test]
    fn mistakes_are_reported_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
        assert!(err.contains("nmae"), "{err}");
        std::fs::write(&path, "heartbeat_ms = 500\ndown_after_ms = 400\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
        assert!(err.contains("heartbeat_ms"), "{err}");
        std::fs::write(&path, "[slo]\nhorizon = \"ten minutes\"\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
        assert!(err.contains("slo.horizon"), "{err}");
        std::fs::write(&path, "[storage]\ncache_mb = 4\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
        assert!(err.contains("storage.cache_mb must be within 8..="), "{err}");
        for bad in ["batch = 0", "batch = 100001", "every_ms = 0", "keep = 1"] {
            std::fs::write(&path, format!("[retention]\n{bad}\n")).unwrap();
            let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
            assert!(err.contains("retention") || err.contains("keep"), "{bad}: {err}");
        }
        std::fs::write(&path, "[retention]\nevents_ms = 0\n").unwrap();
        let off = Settings::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(off.node.retention.events, None, "0 keeps everything");
        assert_eq!(off.node.retention.sessions, Some(Duration::from_secs(30 * 24 * 3600)), "sessions: their own");
        std::fs::write(&path, "[retention]\nevents_ms = 90000\nsessions_ms = 0\nbatch = 500\n").unwrap();
        let short = Settings::load(Some(&path), Overrides::default()).unwrap().node.retention;
        assert_eq!(
            (short.events, short.sessions, short.every, short.batch),
            (Some(Duration::from_secs(90)), None, Duration::from_secs(60), 500)
        );
        std::fs::write(&path, "[[capability]]\nname = \"x\"\ntier = 7\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&path), Overrides::default()).unwrap_err());
        assert!(err.contains("tier"), "{err}");
        let mcp = |executor: &str| {
            std::fs::write(&path, format!("[[capability]]\nname = \"x\"\ntier = 0\nexecutor = {executor}\n")).unwrap();
            Settings::load(Some(&path), Overrides::default()).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        let both = r#"{ kind = "mcp", url = "http://h/mcp", command = ["srv"], tool = "t" }"#;
        assert!(mcp(both).unwrap_err().contains("exactly one of url and command"));
        let neither = r#"{ kind = "mcp", tool = "t" }"#;
        assert!(mcp(neither).unwrap_err().contains("exactly one of url and command"));
        let blank = r#"{ kind = "mcp", command = [" "], tool = "t" }"#;
        assert!(mcp(blank).unwrap_err().contains("empty program"));
        assert_eq!(mcp(r#"{ kind = "mcp", command = ["srv", "--stdio"], tool = "t" }"#), Ok(()));
        let err = Settings::load(Some(&dir.path().join("missing.toml")), Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read"));
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        let overrides = Overrides {
            cluster_addr: Some("127.0.0.1:7400".parse().unwrap()),
            cookie_file: Some(dir.path().join("short")),
            ..Overrides::default()
        };
        let err = format!("{:#}", Settings::load(None, overrides).unwrap_err());
        assert!(err.contains("at least"), "{err}");
    }

    #[test]
    fn tls_files_are_relative_to_the_config_and_turn_transitive_dialling_off() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::generate(&dir.path().join("tls"), &["a".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cookie"), "0123456789abcdef-secret").unwrap();
        let path = dir.path().join("node.toml");
        let load = |extra: &str| {
            let files = "tls_cert = \"tls/a.crt\"\ntls_key = \"tls/a.key\"\ntls_ca = \"tls/ca.crt\"\n";
            let cluster = "cluster_addr = \"127.0.0.1:7400\"\ncookie_file = \"cookie\"\n";
            std::fs::write(&path, format!("{files}{cluster}{extra}")).unwrap();
            Settings::load(Some(&path), Overrides::default())
        };
        let s = load("").unwrap();
        assert!(s.tls.as_ref().is_some_and(|t| t.cluster.is_some()), "HTTPS and a TLS transport");
        let cluster = s.cluster.unwrap();
        assert!(cluster.tls.is_some() && !cluster.transitive, "peers of peers would be dialled in plain TCP");
        let err = format!("{:#}", load("cluster_transitive = true\n").unwrap_err());
        assert!(err.contains("cluster_transitive"), "{err}");
        assert!(Settings::load(None, Overrides::default()).unwrap().tls.is_none());
    }

    #[test]
    fn auth_is_on_with_a_token_file_and_an_open_node_must_be_loopback_or_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        crate::auth::create_token(&tokens, "ops", crate::auth::Role::Admin).unwrap();
        let path = dir.path().join("node.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::load(Some(&path), Overrides::default()).map(|s| s.access)
        };
        let a = load("token_file = \"tokens.toml\"\nhttp_addr = \"0.0.0.0:8000\"\n").unwrap();
        assert!(matches!(a.auth, Auth::Tokens(ref t) if t.len() == 1) && a.metrics_open);
        assert!(matches!(load("").unwrap().auth, Auth::Open { explicit: false }));
        let err = format!("{:#}", load("http_addr = \"0.0.0.0:8000\"\n").unwrap_err());
        assert!(err.contains("not loopback"), "{err}");
        let a = load("http_addr = \"0.0.0.0:8000\"\nauth = \"none\"\nmetrics_open = false\n").unwrap();
        assert!(matches!(a.auth, Auth::Open { explicit: true }) && !a.metrics_open);
        assert!(load("auth = \"tokens\"\n").is_err());
        assert!(load("auth = \"none\"\ntoken_file = \"tokens.toml\"\n").is_err());
    }
}
