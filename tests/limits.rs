//! The HTTP server's named limits (`warden::http::serve`) against the real
//! binary: a connection that never completes its request head is closed
//! after `header_read_timeout`, however slowly it trickles bytes; over
//! `max_connections` a connection is closed at once; and with thousands of
//! idle connections and slow-loris clients open, a normal request is still
//! answered promptly.

mod common;

use common::process::NodeProcess;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Idle connections the crowd test opens when the file-descriptor limit allows.
const IDLE_CONNECTIONS: usize = 10_000;
/// File descriptors kept for everything else (each process: the node's
/// database, listeners and cluster sessions; the test's own files).
const FD_HEADROOM: u64 = 1_000;
/// Slow-loris clients trickling a request head during the measurement.
const SLOW_LORIS: usize = 32;
/// The issue's bound for a normal request in the crowd.
const ANSWERED_WITHIN: Duration = Duration::from_millis(100);

fn node(dir: &Path, extra: &str) -> NodeProcess {
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("[[capability]]\nname = \"search.web\"\ntier = 0\n{extra}")).unwrap();
    NodeProcess::start(&dir.join("data"), Some(&config))
}

fn addr(node: &NodeProcess) -> String {
    node.url.trim_start_matches("http://").to_owned()
}

/// Waits (bounded) until the server closes `s`: a read returns EOF or a reset.
fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Whether the server still holds `s` open (a read would block).
fn still_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// One request on a fresh connection; its status and how long the answer took.
fn timed(addr: &str, request: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let status = std::str::from_utf8(&answer[9..12]).unwrap().parse().unwrap();
    (status, started.elapsed())
}

#[test]
fn a_connection_that_never_finishes_its_head_is_closed_even_when_it_trickles() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "[http]\nheader_read_timeout_ms = 300\n");
    let addr = addr(&node);
    let mut idle = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(5)), "an idle connection stayed open");

    // Slow-loris: a byte of a never-ending head every 50 ms keeps arriving, and still the server closes it.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        if slow.write_all(b"a").is_err() || closed_within(&mut slow, Duration::from_millis(50)) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(closed, "a trickling connection stayed open past the header read timeout");
    // A complete request is still answered.
    assert_eq!(timed(&addr, "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").0, 200);
}

#[test]
fn over_max_connections_a_connection_is_closed_at_once_and_the_rest_stay_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), "[http]\nmax_connections = 8\n");
    let addr = addr(&node);
    let mut held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut extra = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(5)), "the 9th connection was kept");
    assert!(held.iter_mut().all(still_open), "a connection under the limit was closed");
    // One held connection serves a request; closing one makes room for a new one.
    held[0].write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    held[0].read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    drop(held.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        // The freed permit returns once the server has seen the close.
        assert!(Instant::now() < deadline, "no room after a connection closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Raises this process's open-file limit to its hard limit (nodes started
/// afterwards inherit it); returns the soft limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

#[test]
fn with_thousands_of_idle_connections_and_slow_loris_clients_a_normal_request_is_answered_promptly() {
    let fds = raise_fd_limit();
    let count = IDLE_CONNECTIONS.min(fds.saturating_sub(FD_HEADROOM) as usize);
    eprintln!("open-file limit {fds}: {count} idle connections");
    if std::env::var_os("CI").is_some() {
        assert_eq!(
            count,
            IDLE_CONNECTIONS,
            "CI needs a hard open-file limit of at least {}",
            IDLE_CONNECTIONS as u64 + FD_HEADROOM
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // Idle connections are kept for the whole test (they are closed after the
    // header read timeout otherwise: the first test shows that).
    let node = node(dir.path(), "[http]\nheader_read_timeout_ms = 600000\n");
    let addr = addr(&node);

    let opening = Instant::now();
    let mut idle = Vec::with_capacity(count);
    let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for i in 0..count {
        idle.push(TcpStream::connect(&addr).expect("the node accepts the crowd"));
        // An answered request has passed every earlier connection in the accept
        // queue: the crowd grows no faster than the node takes it in.
        if i % 500 == 499 {
            assert_eq!(timed(&addr, health).0, 200);
        }
    }
    eprintln!("{count} connections opened in {:?}", opening.elapsed());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loris: Vec<_> = (0..SLOW_LORIS)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                let _ = s.write_all(b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(b"a").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    let body = r#"{"summary":"in the crowd"}"#;
    let turn = format!(
        "POST /v1/sessions/crowd/turns HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut took = Vec::new();
    for i in 0..20 {
        let (status, t) = timed(&addr, if i % 2 == 0 { health } else { &turn });
        assert!(status == 200 || status == 201, "status {status}");
        took.push(t);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loris {
        l.join().unwrap();
    }
    took.sort();
    let ms: Vec<u128> = took.iter().map(|d| d.as_millis()).collect();
    eprintln!("with {count} idle connections and {SLOW_LORIS} slow-loris clients: answers in {ms:?} ms");
    assert!(
        took[took.len() / 2] < ANSWERED_WITHIN,
        "median answer {:?} ≥ {ANSWERED_WITHIN:?}: {ms:?}",
        took[took.len() / 2]
    );
    // The crowd was really there: the server held every idle connection throughout.
    let open = idle.iter_mut().map(still_open).filter(|open| *open).count();
    assert_eq!(open, count, "the server closed idle connections during the measurement");
}
