//! How a node is configured: every knob an actor reads, with defaults that
//! work. The `Runtime` carries the whole `NodeConfig`, so an actor takes what
//! it needs from there and adding one needs no new plumbing.

use crate::authz::PolicyConfig;
use crate::clock::Clock;
use crate::consensus::{Durability, RaftSettings};
use crate::disk::{Watermark, DEFAULT_STATE_SIZE_EVERY_MS};
use crate::domain::Capability;
use std::path::PathBuf;
use std::time::Duration;

/// Default time a tier-2 action waits for its confirmation (contract.md).
pub const DEFAULT_CONFIRM_TTL_MS: u64 = 300_000;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub capabilities: Vec<Capability>,
    pub confirm_ttl_ms: u64,
    /// Seed of the sim executors: the same seed replays the same outcomes.
    pub sim_seed: u64,
    pub supervisor: SupervisorConfig,
    /// Lets `_sim.panic_attempts` crash the Executors actor (supervision tests).
    pub fault_injection: bool,
    pub registry: RegistryConfig,
    pub raft: RaftSettings,
    pub health: HealthConfig,
    pub storage: StorageConfig,
    /// How long the timeline and finished work are kept in the replicated state.
    pub retention: RetentionConfig,
    pub slo: SloConfig,
    /// Where alerts go (`[[notify]]`), and how they are sent.
    pub notify: NotifyConfig,
    /// Where every time-based decision reads the time (a manual clock in tests).
    pub clock: Clock,
    /// The engine and bundle that decide actions.
    pub policy: PolicyConfig,
}

impl NodeConfig {
    pub fn new(name: &str, data_dir: impl Into<PathBuf>, capabilities: Vec<Capability>) -> Self {
        Self {
            name: name.to_owned(),
            data_dir: data_dir.into(),
            durability: Durability::Durable,
            capabilities,
            confirm_ttl_ms: DEFAULT_CONFIRM_TTL_MS,
            sim_seed: 0,
            supervisor: SupervisorConfig::default(),
            fault_injection: false,
            registry: RegistryConfig::default(),
            raft: RaftSettings::default(),
            health: HealthConfig::default(),
            storage: StorageConfig::default(),
            retention: RetentionConfig::default(),
            slo: SloConfig::default(),
            notify: NotifyConfig::default(),
            clock: Clock::system(),
            policy: PolicyConfig::default(),
        }
    }
}

/// Restart intensity and backoff of the node's supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// Restarts of one child tolerated within `window`; one more escalates.
    pub max_restarts: usize,
    pub window: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(30),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Heartbeat timing of the Registry. The defaults declare a silent node down after 1 s.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub heartbeat: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            suspect_after: Duration::from_millis(500),
            down_after: Duration::from_millis(1_000),
        }
    }
}

/// What counts as unhealthy.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Restarts are counted over this window…
    pub restart_window: Duration,
    /// …and this many in it make a restart loop.
    pub restart_loop: u32,
    /// A node this many entries behind the most advanced one is lagging.
    pub lag_entries: u64,
    /// The DLQ is growing when it is deeper than this long ago.
    pub dlq_window: Duration,
    pub report_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            restart_window: Duration::from_secs(60),
            restart_loop: 3,
            lag_entries: 1_000,
            dlq_window: Duration::from_secs(60),
            report_every: Duration::from_millis(500),
        }
    }
}

/// The data dir's free-space low watermark and how often it is checked
/// (docs/operations.md, "Disk full").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    pub watermark: Watermark,
    /// Free space is read this often, on the node's clock.
    pub check_every: Duration,
    /// The state's tables are measured this often (a walk of every table:
    /// a read of the file).
    pub size_every: Duration,
    /// redb's page cache for the node's two files, in bytes: three quarters
    /// for `warden.redb`, a quarter for the timeline index. What the node
    /// keeps of its files in memory is bounded by it, whatever their size.
    pub cache_bytes: usize,
}

/// The default page cache: 256 MiB (redb's own default is 1 GiB per file).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

impl StorageConfig {
    /// The page cache of `warden.redb`.
    pub fn state_cache(&self) -> usize {
        self.cache_bytes - self.index_cache()
    }

    /// The page cache of the timeline index.
    pub fn index_cache(&self) -> usize {
        self.cache_bytes / 4
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            watermark: Watermark::default(),
            check_every: Duration::from_secs(1),
            size_every: Duration::from_millis(DEFAULT_STATE_SIZE_EVERY_MS),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Retention of the replicated state (docs/operations.md, "Retention and
/// archive"): the leader expires what is older than `events`, at most
/// `batch` events per command, checking every `every` on the node's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Events older than this expire, and with them the finished actions and
    /// the turns they recorded; `None`: the state keeps everything.
    pub events: Option<Duration>,
    /// Sessions idle longer than this expire once none of their turns is
    /// retained (low-trust sessions never do); `None`: sessions stay.
    pub sessions: Option<Duration>,
    pub every: Duration,
    /// Events one `Expire` command removes at most (one archive segment).
    pub batch: u64,
}

/// Seven days: the default retention of events and finished work.
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Thirty days: the default retention of an idle session.
pub const DEFAULT_SESSION_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Events one `Expire` command removes at most, by default.
pub const DEFAULT_EXPIRE_BATCH: u64 = 20_000;

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: Some(DEFAULT_EVENT_RETENTION),
            sessions: Some(DEFAULT_SESSION_RETENTION),
            every: Duration::from_secs(60),
            batch: DEFAULT_EXPIRE_BATCH,
        }
    }
}

/// The SloMonitor's windows and detectors (docs/operations.md, "SLO advisories").
#[derive(Clone, Debug, PartialEq)]
pub struct SloConfig {
    /// Record every attempt (off: the monitor answers with empty windows; for
    /// measuring its overhead).
    pub enabled: bool,
    /// One fine slot of the ring: its latency histogram and counts.
    pub slot: Duration,
    /// How much of the fine ring is kept (the longest percentile window).
    pub keep: Duration,
    /// One coarse slot: counts only, for burn windows longer than `keep`.
    pub coarse_slot: Duration,
    /// The error budget's period; the burn windows scale with it.
    pub period: Duration,
    /// Percentile windows reported per capability, unless its `slo.windows` says otherwise.
    pub windows: Vec<Duration>,
    /// The window whose p95 makes each point of the trend series.
    pub trend_window: Duration,
    /// The series the trend is fitted to spans this long…
    pub trend_span: Duration,
    /// …and needs this many points.
    pub trend_min_points: usize,
    /// A trend advisory fires when the fit crosses the SLO within this.
    pub horizon: Duration,
    /// Fewer attempts than this in a window make no p95 point and no latency verdict.
    pub min_samples: u64,
    /// An advisory ends only when its figure is this share under its threshold.
    pub hysteresis: f64,
    /// The window whose p95 is compared with the SLO for `slo.breached`.
    pub breach_window: Duration,
}

impl Default for SloConfig {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Self {
            enabled: true,
            slot: Duration::from_secs(10),
            keep: min(60),
            coarse_slot: min(15),
            period: min(30 * 24 * 60),
            windows: vec![min(1), min(5), min(60)],
            trend_window: min(1),
            trend_span: min(15),
            trend_min_points: 5,
            horizon: min(10),
            min_samples: 20,
            hysteresis: 0.1,
            breach_window: min(5),
        }
    }
}

/// What a notification channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// One structured log line per state change.
    Log,
    /// A signed JSON POST per state change.
    Webhook,
    /// Alertmanager's API v2 (`POST /api/v2/alerts`).
    Alertmanager,
}

/// One `[[notify]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    /// How deliveries to it are recorded: `<kind>` or `<kind>-<n>` for the
    /// n-th channel of one kind (from 2).
    pub name: String,
    pub kind: ChannelKind,
    /// Webhook URL, or the Alertmanager base URL (`http://host:9093`).
    pub url: Option<String>,
    /// The webhook's HMAC-SHA256 key.
    pub secret: Option<String>,
}

/// The Notifier's channels and bounds (docs/operations.md, "Alerts").
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyConfig {
    pub channels: Vec<ChannelConfig>,
    /// The dashboard's address: alerts link to it (`generatorURL`).
    pub dashboard_url: String,
    /// How often the leader looks for undelivered state changes.
    pub scan_every: Duration,
    /// How often firing alerts are sent to Alertmanager again (30–60 s).
    pub resend_every: Duration,
    /// One request to a receiver gives up after this.
    pub request_timeout: Duration,
    /// Retry pauses grow from `retry_base` to `retry_max` (with jitter).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Deliveries waiting per channel; past it, changes wait for the next scan.
    pub queue_limit: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            dashboard_url: "http://127.0.0.1:8000/".into(),
            scan_every: Duration::from_secs(1),
            resend_every: Duration::from_secs(45),
            request_timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            queue_limit: 256,
        }
    }
}
