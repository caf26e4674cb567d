//! A fault-injecting TCP proxy for partition tests. Put one in front of a
//! node's cluster port and give its address to the peer as a seed: every
//! byte of that link then passes through it, and the test can
//! - `blackhole()`: keep both sockets open and drop every byte (a network
//!   partition as TCP sees it: silence, no reset);
//! - `delay(d)`: hold each chunk for `d` before passing it on;
//! - `cut()`: close every connection and refuse new ones;
//! - `heal()`: pass traffic again. Connections that lost bytes to a
//!   blackhole are closed first (their framing is broken): the ends re-dial.
//!
//! It runs on its own thread and runtime, so it keeps working while the test
//! thread blocks (e.g. waiting for a process to start).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    Delay(Duration),
    Cut,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to close every open connection.
    epoch: Arc<AtomicU64>,
    epoch_changed: watch::Sender<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free loopback port that forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (epoch_changed, epoch_rx) = watch::channel(0u64);
        let epoch = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    _ = accept_loop(listener, target, mode_rx, epoch_rx) => {}
                    _ = stop_rx => {}
                }
            });
        });
        Proxy { addr, mode, epoch, epoch_changed, stop: Some(stop), thread: Some(thread) }
    }

    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    pub fn delay(&self, d: Duration) {
        self.mode.send_replace(Mode::Delay(d));
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        self.close_all();
    }

    pub fn heal(&self) {
        let was = self.mode.send_replace(Mode::Pass);
        if was == Mode::Blackhole {
            self.close_all();
        }
    }

    fn close_all(&self) {
        let next = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.epoch_changed.send_replace(next);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    epoch: watch::Receiver<u64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else { continue };
        if *mode.borrow() == Mode::Cut {
            drop(inbound);
            continue;
        }
        let (mode, mut epoch) = (mode.clone(), epoch.clone());
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else { return };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let born = *epoch.borrow_and_update();
            tokio::select! {
                _ = pump(ri, wo, mode.clone()) => {}
                _ = pump(ro, wi, mode) => {}
                _ = epoch.wait_for(|e| *e != born) => {}
            }
            // Dropping both halves of both sockets closes the link.
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Blackhole => continue,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Cut => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
