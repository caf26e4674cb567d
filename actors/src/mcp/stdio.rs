//! An upstream MCP server over stdio: a child process warden starts and
//! speaks newline-delimited JSON-RPC to, on its stdin and stdout (the MCP
//! stdio transport). It is started by the first request and again by the
//! first request after it exits (with a warning naming its exit status and
//! the last lines of its stderr); meanwhile its calls fail as retryable, so
//! an attempt cut by its death is retried like any other, with the same
//! idempotency key in `_meta`. Its stderr goes to warden's log at debug
//! level. The process is killed when its client is dropped (the node stops,
//! the executors restart), and a stdio MCP server exits when its stdin
//! closes anyway.

use super::{initialize_request, initialized_notification, negotiated, result_of, McpError, MAX_ANSWER_BYTES};
use crate::domain::McpUpstream;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// Lines of a child's stderr kept to show when it exits.
const STDERR_TAIL: usize = 20;
/// JSON-RPC "method not found", for requests a server sends warden.
const METHOD_NOT_FOUND: i64 = -32601;

/// Calls waiting for their answer, by request id; `None` once the process
/// is gone (every waiting call is then told so, and no more are taken).
type Waiting = Arc<parking_lot::Mutex<Option<HashMap<u64, oneshot::Sender<Value>>>>>;

pub(super) struct StdioUpstream {
    command: Vec<String>,
    /// How the upstream is named in errors and logs.
    shown: String,
    live: tokio::sync::Mutex<Option<Arc<Process>>>,
    next_id: AtomicU64,
}

/// One running child.
struct Process {
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiting: Waiting,
    stderr_tail: Arc<parking_lot::Mutex<VecDeque<String>>>,
    /// Killed when dropped.
    child: parking_lot::Mutex<Child>,
}

impl Process {
    fn alive(&self) -> bool {
        self.waiting.lock().is_some()
    }
}

/// Takes a call's place among the waiting back out if the call is dropped
/// before its answer (an attempt's timeout).
struct Ticket {
    waiting: Waiting,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(map) = self.waiting.lock().as_mut() {
            map.remove(&self.id);
        }
    }
}

impl StdioUpstream {
    pub(super) fn new(command: &[String]) -> Self {
        Self {
            command: command.to_vec(),
            shown: McpUpstream::Stdio(command.to_vec()).to_string(),
            live: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// One request to the running process, started (and initialized) first
    /// if there is none or it exited.
    pub(super) async fn request(&self, method: &str, params: Value) -> Result<Value, McpError> {
        let process = self.process().await?;
        let answer = self.call(&process, method, params).await?;
        result_of(answer, &self.shown)
    }

    async fn process(&self) -> Result<Arc<Process>, McpError> {
        let mut live = self.live.lock().await;
        if let Some(p) = live.as_ref() {
            if p.alive() {
                return Ok(p.clone());
            }
            let status = p.child.lock().try_wait().ok().flatten();
            let tail: Vec<String> = p.stderr_tail.lock().iter().cloned().collect();
            tracing::warn!(
                upstream = %self.shown,
                status = ?status,
                stderr = %tail.join("\n"),
                "an MCP upstream exited; starting it again"
            );
        }
        *live = None;
        let process = Arc::new(self.start()?);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = self.send_waiting(&process, id, initialize_request(id)).await?;
        negotiated(&result_of(answer, &self.shown)?, &self.shown)?;
        write_line(&process.stdin, &initialized_notification()).await.map_err(|e| self.lost(&process, e))?;
        *live = Some(process.clone());
        Ok(process)
    }

    fn start(&self) -> Result<Process, McpError> {
        let (program, args) = self.command.split_first().expect("validated: a command has a program");
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| McpError::Transient(format!("cannot start {}: {e}", self.shown)))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(McpError::Transient(format!("{} started without its pipes", self.shown)));
        };
        tracing::info!(upstream = %self.shown, pid = ?child.id(), "started an MCP upstream");
        let process = Process {
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            waiting: Arc::new(parking_lot::Mutex::new(Some(HashMap::new()))),
            stderr_tail: Default::default(),
            child: parking_lot::Mutex::new(child),
        };
        tokio::spawn(read_answers(stdout, process.stdin.clone(), process.waiting.clone(), self.shown.clone()));
        tokio::spawn(read_stderr(stderr, process.stderr_tail.clone(), self.shown.clone()));
        Ok(process)
    }

    async fn call(&self, process: &Process, method: &str, params: Value) -> Result<Value, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_waiting(process, id, request).await
    }

    /// Sends `request` (whose id is `id`) and waits for its answer.
    async fn send_waiting(&self, process: &Process, id: u64, request: Value) -> Result<Value, McpError> {
        let (tx, rx) = oneshot::channel();
        match process.waiting.lock().as_mut() {
            Some(map) => map.insert(id, tx),
            None => return Err(self.exited()),
        };
        let _ticket = Ticket { waiting: process.waiting.clone(), id };
        write_line(&process.stdin, &request).await.map_err(|e| self.lost(process, e))?;
        rx.await.map_err(|_| self.exited())
    }

    /// A write to the process failed: it is taken as gone.
    fn lost(&self, process: &Process, error: std::io::Error) -> McpError {
        process.waiting.lock().take();
        McpError::Transient(format!("writing to {}: {error}", self.shown))
    }

    fn exited(&self) -> McpError {
        McpError::Transient(format!("{} exited before answering", self.shown))
    }
}

async fn write_line(stdin: &tokio::sync::Mutex<ChildStdin>, message: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut stdin = stdin.lock().await;
    stdin.write_all(&line).await?;
    stdin.flush().await
}

/// Routes each answer on the child's stdout to its waiting call, answers
/// the server's own requests (`ping`; anything else is not served), and
/// when stdout ends (the child exited) or breaks the protocol, tells every
/// waiting call.
async fn read_answers(
    stdout: impl AsyncRead + Unpin,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiting: Waiting,
    shown: String,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_ANSWER_BYTES as u64 + 1).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) => break,
            Ok(_) if line.len() > MAX_ANSWER_BYTES => {
                tracing::warn!(upstream = %shown, "an MCP upstream wrote a line over {MAX_ANSWER_BYTES} bytes; dropping it");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(upstream = %shown, error = %e, "reading an MCP upstream's stdout");
                break;
            }
        }
        let Ok(message) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
            if !line.trim_ascii().is_empty() {
                tracing::debug!(upstream = %shown, line = %String::from_utf8_lossy(&line), "not JSON-RPC on stdout");
            }
            continue;
        };
        match (message.get("method").and_then(Value::as_str), message.get("id")) {
            (Some(method), Some(id)) => {
                let reply = if method == "ping" {
                    json!({ "jsonrpc": "2.0", "id": id, "result": {} })
                } else {
                    let error =
                        json!({ "code": METHOD_NOT_FOUND, "message": format!("warden does not serve {method}") });
                    json!({ "jsonrpc": "2.0", "id": id, "error": error })
                };
                if write_line(&stdin, &reply).await.is_err() {
                    break;
                }
            }
            (Some(_), None) => {} // a notification
            (None, Some(id)) => {
                let waiter = id.as_u64().and_then(|id| waiting.lock().as_mut().and_then(|m| m.remove(&id)));
                if let Some(tx) = waiter {
                    let _ = tx.send(message);
                }
            }
            (None, None) => {}
        }
    }
    waiting.lock().take();
}

/// The child's stderr, to the log at debug level; the last lines are kept.
async fn read_stderr(stderr: impl AsyncRead + Unpin, tail: Arc<parking_lot::Mutex<VecDeque<String>>>, shown: String) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(upstream = %shown, "{line}");
        let mut tail = tail.lock();
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdio MCP server in sh: answers `initialize`, answers a call with
    /// its pid, and exits (status 3) on a call whose arguments say "die".
    /// A call saying "ask" first sends warden a `ping` and a `roots/list`
    /// and answers with what warden replied to each.
    const SERVER: &str = r#"
while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"sh","version":"1"}}}\n' "$id" ;;
    *die*) echo "dying on request $id" >&2; exit 3 ;;
    *ask*)
      printf '{"jsonrpc":"2.0","id":"s1","method":"ping"}\n'; IFS= read -r pong
      printf '{"jsonrpc":"2.0","id":"s2","method":"roots/list"}\n'; IFS= read -r roots
      a=none; case "$pong" in *'"id":"s1"'*) case "$pong" in *'"result":{}'*) a=pong ;; esac ;; esac
      b=answered; case "$roots" in *'"id":"s2"'*) case "$roots" in *-32601*) b=refused ;; esac ;; esac
      printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s %s"}]}}\n' "$id" "$a" "$b" ;;
    *'"tools/call"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}]}}\n' "$id" "$$" ;;
  esac
done
"#;

    fn sh_server() -> StdioUpstream {
        StdioUpstream::new(&["sh".into(), "-c".into(), SERVER.into()])
    }

    async fn call(up: &StdioUpstream, word: &str) -> Result<String, McpError> {
        let result = up.request("tools/call", json!({"name": "t", "arguments": {"word": word}})).await?;
        Ok(result["content"][0]["text"].as_str().expect("text content").to_owned())
    }

    #[tokio::test]
    async fn a_server_that_exits_mid_call_fails_the_call_and_is_started_again() {
        let up = sh_server();
        let first = call(&up, "a").await.unwrap();
        assert_eq!(call(&up, "b").await.unwrap(), first, "one process serves call after call");
        match call(&up, "die").await {
            Err(McpError::Transient(m)) => assert!(m.contains("exited before answering"), "{m}"),
            other => panic!("a call cut by the exit is retryable: {other:?}"),
        }
        let again = call(&up, "c").await.unwrap();
        assert_ne!(again, first, "a new process answers");
    }

    #[tokio::test]
    async fn the_servers_own_requests_get_a_pong_or_method_not_found() {
        assert_eq!(call(&sh_server(), "ask").await.unwrap(), "pong refused");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_a_retryable_failure_naming_it() {
        let up = StdioUpstream::new(&["/nonexistent/mcp-server".into()]);
        match call(&up, "a").await {
            Err(McpError::Transient(m)) => {
                assert!(m.contains("cannot start stdio:/nonexistent/mcp-server"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
