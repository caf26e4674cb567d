//! Cluster transport: a ractor_cluster `NodeServer` on `cluster_addr`, peers
//! authenticated by a shared cookie (challenge/response; the cookie never
//! crosses the wire), seeds dialled and re-dialled with backoff —
//! ractor_cluster itself never reconnects. The table of peers it keeps is what
//! `GET /v1/cluster` shows.
//!
//! Liveness (heartbeats, failure detection, service placement) is the
//! Registry's job and builds on this; a session here only says "connected".

use crate::tls::ClusterTls;
use anyhow::{bail, Context};
use parking_lot::RwLock;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, IncomingEncryptionMode};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use warden_actors::backoff;
use warden_actors::clock::wall_ms as now_ms;

/// Environment variable that holds the cookie when no cookie file is given.
pub const COOKIE_ENV: &str = "WARDEN_COOKIE";
/// Shortest cookie accepted: it is the cluster's only shared secret.
pub const MIN_COOKIE_LEN: usize = 16;
/// Backoff between attempts to reach a seed that is not connected.
pub const SEED_RETRY_MIN: Duration = Duration::from_millis(100);
pub const SEED_RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest a dialler may take over the TLS handshake on the cluster port
/// before its connection is dropped: a client that connects and says nothing
/// must not hold the port.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshakes under way at once on the cluster port; further connections
/// wait in the kernel's accept queue.
pub const MAX_TLS_HANDSHAKES: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub addr: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub cookie: String,
    /// Connect to the peers of peers (the default). Off, a node connects only
    /// to its seeds and to whoever dials it: each link is chosen explicitly,
    /// e.g. to route it through a fault-injecting proxy in tests.
    pub transitive: bool,
    /// Mutual TLS on every session, in and out (the cookie handshake runs inside it).
    pub tls: Option<ClusterTls>,
}

/// Reads the cookie from `file`, else from `WARDEN_COOKIE`; refuses to go on without one.
pub fn load_cookie(file: Option<&Path>) -> anyhow::Result<String> {
    let cookie = match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read cookie file {}", path.display()))?
        }
        None => std::env::var(COOKIE_ENV)
            .with_context(|| format!("a cluster node needs a cookie: set cookie_file or {COOKIE_ENV}"))?,
    };
    let cookie = cookie.trim().to_owned();
    if cookie.len() < MIN_COOKIE_LEN || cookie.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the cookie must be at least {MIN_COOKIE_LEN} printable characters without spaces");
    }
    Ok(cookie)
}

/// A peer as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    pub name: String,
    pub cluster_addr: String,
    /// The far end of the session's socket: the seed address dialled, when
    /// the link goes through a proxy or an address translation.
    pub socket_addr: String,
    pub state: &'static str,
    pub since_ms: u64,
}

#[derive(Default)]
struct Table {
    peers: BTreeMap<String, Peer>,
    /// Sessions that closed before authenticating: a wrong cookie, something
    /// that is not a warden node, or the loser of two simultaneous dials
    /// (ractor_cluster keeps one session per pair; a few at start-up are normal).
    rejected_sessions: u64,
}

enum SessionEvent {
    Ready(NodeServerSessionInformation),
    Authenticated(NodeServerSessionInformation),
    Disconnected(NodeServerSessionInformation),
}

struct Forward(mpsc::UnboundedSender<SessionEvent>);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Authenticated(ses));
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Ready(ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Disconnected(ses));
    }
}

/// What `GET /v1/cluster` reports about the transport.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    pub cluster_addr: String,
    pub peers: Vec<Peer>,
    pub rejected_sessions: u64,
}

pub struct Cluster {
    server: ActorRef<NodeServerMessage>,
    addr: SocketAddr,
    table: Arc<RwLock<Table>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn peer_of(ses: &NodeServerSessionInformation) -> Option<(String, String)> {
    let name = ses.peer_name.as_ref()?;
    let short = name.name.split('@').next().unwrap_or(&name.name).to_owned();
    Some((short, name.connection_string.clone()))
}

/// Keeps the peer table in step with the transport's sessions, and calls
/// `peer_lost` when a peer's last authenticated session closes.
async fn follow_sessions(
    me: String,
    mut rx: mpsc::UnboundedReceiver<SessionEvent>,
    events_table: Arc<RwLock<Table>>,
    peer_lost: impl Fn(&str) + Send + 'static,
) {
    // Which sessions authenticated, so a close before that counts as a rejection.
    let mut authenticated = std::collections::HashSet::new();
    // Open sessions per peer: a peer is lost when its last one closes.
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    while let Some(event) = rx.recv().await {
        let mut t = events_table.write();
        match event {
            SessionEvent::Authenticated(ses) => {
                authenticated.insert(ses.node_id);
            }
            SessionEvent::Ready(ses) => {
                let Some((name, addr)) = peer_of(&ses) else { continue };
                *open.entry(name.clone()).or_default() += 1;
                tracing::info!(node = %me, peer = %name, "peer connected");
                t.peers.insert(
                    name.clone(),
                    Peer {
                        name,
                        cluster_addr: addr,
                        socket_addr: ses.peer_addr.to_string(),
                        state: "connected",
                        since_ms: now_ms(),
                    },
                );
            }
            SessionEvent::Disconnected(ses) => {
                if !authenticated.remove(&ses.node_id) {
                    t.rejected_sessions += 1;
                    tracing::info!(node = %me, peer_addr = %ses.peer_addr,
                        "cluster session closed before authenticating (wrong cookie, or a duplicate dial)");
                    continue;
                }
                let Some((name, _)) = peer_of(&ses) else { continue };
                let left = open.get_mut(&name).map(|n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                // A duplicate session closing must not hide the live one.
                if left.unwrap_or(0) > 0 {
                    continue;
                }
                if let Some(p) = t.peers.get_mut(&name) {
                    p.state = "disconnected";
                    p.since_ms = now_ms();
                }
                drop(t);
                peer_lost(&name);
            }
        }
    }
}

impl Cluster {
    /// Starts the transport; `peer_lost` is called with a peer's name when
    /// its authenticated session closes.
    pub async fn start(
        node_name: &str,
        settings: ClusterSettings,
        peer_lost: impl Fn(&str) + Send + 'static,
    ) -> anyhow::Result<Cluster> {
        // With TLS, warden accepts on `cluster_addr` itself and hands each
        // session to the server once its handshake is done (bounded in time,
        // one task each). ractor_cluster's own listener would run handshakes
        // one at a time in its accept loop, so one silent client could hold
        // the port; it listens on an ephemeral loopback port instead, still
        // TLS-only, and the name peers see carries the public port.
        let public = match &settings.tls {
            Some(_) => Some(
                TcpListener::bind(settings.addr)
                    .await
                    .with_context(|| format!("cannot listen on cluster_addr {}", settings.addr))?,
            ),
            None => None,
        };
        let (port, listen_ip) = match &public {
            Some(_) => (0, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            None => (settings.addr.port(), settings.addr.ip()),
        };
        let server = NodeServer::new(
            port,
            settings.cookie.clone(),
            node_name.to_owned(),
            settings.addr.ip().to_string(),
            settings.tls.as_ref().map(|t| IncomingEncryptionMode::Tls(t.acceptor.clone())),
            Some(if settings.transitive { NodeConnectionMode::Transitive } else { NodeConnectionMode::Isolated }),
        )
        .with_listen_addr(listen_ip);
        let (server, _) = Actor::spawn(None, server, ()).await.context("cluster server did not start")?;
        let mut tasks = Vec::new();
        if let (Some(listener), Some(tls)) = (public, &settings.tls) {
            // Queued after the listener's own report of its ephemeral port.
            let port = listener.local_addr().context("cluster listener has no address")?.port();
            server.cast(NodeServerMessage::PortChanged { port }).context("cluster server stopped at start")?;
            tasks.push(tokio::spawn(accept_tls(listener, tls.acceptor.clone(), server.clone())));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        server
            .cast(NodeServerMessage::SubscribeToEvents { id: "warden".into(), subscription: Box::new(Forward(tx)) })
            .context("cannot subscribe to cluster sessions")?;
        let table = Arc::new(RwLock::new(Table::default()));
        let me = node_name.to_owned();
        tasks.push(tokio::spawn(follow_sessions(me, rx, table.clone(), peer_lost)));
        for seed in settings.seeds.iter().copied().filter(|s| *s != settings.addr) {
            tasks.push(tokio::spawn(keep_connected(server.clone(), table.clone(), seed, settings.tls.clone())));
        }
        Ok(Cluster { server, addr: settings.addr, table, tasks })
    }

    pub fn view(&self) -> ClusterView {
        let t = self.table.read();
        ClusterView {
            cluster_addr: self.addr.to_string(),
            peers: t.peers.values().cloned().collect(),
            rejected_sessions: t.rejected_sessions,
        }
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.server.stop(None);
    }
}

/// Accepts cluster connections on the public port: each TLS handshake runs in
/// its own task under [`TLS_HANDSHAKE_TIMEOUT`], at most [`MAX_TLS_HANDSHAKES`]
/// at once, and a finished one becomes a session of the server (the cookie
/// handshake follows inside it).
async fn accept_tls(listener: TcpListener, acceptor: TlsAcceptor, server: ActorRef<NodeServerMessage>) {
    let permits = Arc::new(Semaphore::new(MAX_TLS_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cluster port: accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let (acceptor, server) = (acceptor.clone(), server.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let stream = Box::new(TlsSession { stream, peer });
                    let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal { stream, is_server: true });
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "cluster TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "cluster TLS handshake timed out"),
            }
        });
    }
}

/// An accepted TLS connection, as the server's sessions take it.
struct TlsSession {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl ClusterBidiStream for TlsSession {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.stream);
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.to_string())
    }
}

/// Dials `seed` whenever no connected peer lives at that address.
async fn keep_connected(
    server: ActorRef<NodeServerMessage>,
    table: Arc<RwLock<Table>>,
    seed: SocketAddr,
    tls: Option<ClusterTls>,
) {
    let target = seed.to_string();
    let mut pauses = backoff::exponential(SEED_RETRY_MIN, SEED_RETRY_MAX);
    loop {
        let connected = table
            .read()
            .peers
            .values()
            .any(|p| (p.cluster_addr == target || p.socket_addr == target) && p.state == "connected");
        let pause = if connected {
            pauses = backoff::exponential(SEED_RETRY_MIN, SEED_RETRY_MAX);
            SEED_RETRY_MIN
        } else {
            let dialled = match &tls {
                None => ractor_cluster::client_connect(&server, seed).await,
                Some(tls) => {
                    let name = crate::tls::server_name(seed);
                    ractor_cluster::client_connect_enc(&server, seed, tls.connector.clone(), name).await
                }
            };
            if let Err(e) = dialled {
                tracing::debug!(%seed, error = %e, "seed not reachable yet");
            }
            pauses.next().unwrap_or(SEED_RETRY_MAX)
        };
        tokio::time::sleep(pause).await;
    }
}
