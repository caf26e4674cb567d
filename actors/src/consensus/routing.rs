//! Client routing: a write or read barrier on any node is served by the
//! leader — here, or forwarded once over the cluster transport.

use super::network::{self, Forwarded, Reply, Request};
use super::{unavailable, Consensus, Refused};
use crate::command::{Entry, Response};
use crate::error::WardenError;
use std::time::{Duration, Instant};

/// Where a request that needs the leader is served.
enum Route {
    Here,
    Leader { id: u64, name: String },
}

impl Consensus {
    /// The name of the member with Raft id `id`.
    pub(super) fn member_name(&self, id: u64) -> Option<String> {
        let metrics = self.raft.metrics();
        let name = metrics.borrow().membership_config.membership().get_node(&id).map(|m| m.name.clone());
        name
    }

    /// Where a request that needs the leader goes, waiting for a leader
    /// (and for its name to be known) until `deadline`.
    async fn route(&self, deadline: Instant) -> crate::Result<Route> {
        loop {
            let leader = self.leader(deadline).await?;
            if leader == self.id {
                return Ok(Route::Here);
            }
            match self.member_name(leader) {
                Some(name) => return Ok(Route::Leader { id: leader, name }),
                None => self.await_leader_change(leader, deadline).await?,
            }
        }
    }

    /// The current leader, waiting for one until `deadline`.
    async fn leader(&self, deadline: Instant) -> crate::Result<u64> {
        let within = deadline.saturating_duration_since(Instant::now());
        let metrics = self
            .raft
            .wait(Some(within))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| unavailable(format!("no raft leader within {within:?} (is a majority of nodes up?)")))?;
        Ok(metrics.current_leader.expect("waited for a leader"))
    }

    /// Appends `entry` through the leader and returns its outcome once it is
    /// committed and applied on this node. An error means it was not
    /// acknowledged: either it was surely not appended, or (timeouts) its
    /// fate is unknown; it is never reported as done when it was not.
    pub async fn propose(&self, entry: Entry) -> crate::Result<Response> {
        // New work is refused here while this node's storage is low; the
        // leader asks its own gate again for forwarded writes (`rpc`).
        self.storage.admit(&entry.cmd)?;
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let (leader, target) = match route {
                Route::Here => {
                    self.refuse_without_quorum()?;
                    match tokio::time::timeout(left, self.proposer.write(entry.clone())).await {
                        Ok(Ok((outcome, _))) => return outcome,
                        Ok(Err(Refused::NotLeader)) => {
                            self.await_leader_change(self.id, deadline).await?;
                            continue;
                        }
                        Ok(Err(Refused::Failed(e))) => return Err(unavailable(format!("write failed: {e}"))),
                        Err(_) => return Err(self.not_committed(left)),
                    }
                }
                Route::Leader { id, name } => (id, name),
            };
            match network::call(&target, &Request::Forward(entry.clone()), left).await {
                Ok(Reply::Forward(Forwarded::Committed { outcome, index })) => {
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                    self.hub.applied_at_least(index, left).await?;
                    return outcome;
                }
                Ok(Reply::Forward(Forwarded::NotLeader)) | Err(network::CallError::NoRoute(_)) => {
                    // Nothing was appended: try again once the leader is known anew.
                    self.await_leader_change(leader, deadline).await?;
                }
                Ok(Reply::Forward(Forwarded::Refused(e))) => return Err(e),
                Ok(Reply::Forward(Forwarded::Failed(e))) => {
                    return Err(unavailable(format!("write failed on the leader: {e}")))
                }
                Ok(_) => return Err(unavailable("the leader sent an unexpected reply")),
                Err(network::CallError::Timeout(..)) => return Err(self.not_committed(left)),
                Err(network::CallError::Lost(_)) => {
                    return Err(unavailable(
                        "the session to the leader closed before it answered (the write may still commit)",
                    ))
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    fn not_committed(&self, waited: Duration) -> WardenError {
        unavailable(format!(
            "the write was not committed within {waited:?}: no quorum reachable? (it may still commit later)"
        ))
    }

    /// A leader that has not heard from a quorum for an election timeout is
    /// probably cut off: refuse at once rather than time out.
    fn refuse_without_quorum(&self) -> crate::Result<()> {
        let since = self.raft.metrics().borrow().millis_since_quorum_ack;
        // Twice the longest election timeout: past it, the others may have elected a new leader.
        let limit = 2 * self.settings.election_timeout.1.as_millis() as u64;
        match since {
            Some(ms) if ms > limit => Err(unavailable(format!(
                "this node leads but no quorum has acknowledged it for {ms} ms (partitioned?)"
            ))),
            _ => Ok(()),
        }
    }

    /// Waits (briefly) until the known leader is no longer `old`.
    pub(super) async fn await_leader_change(&self, old: u64, deadline: Instant) -> crate::Result<()> {
        let within = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let _ = self.raft.wait(Some(within)).metrics(|m| m.current_leader != Some(old), "a new leader").await;
        if Instant::now() >= deadline {
            return Err(unavailable("no reachable raft leader (is a majority of nodes up?)"));
        }
        Ok(())
    }

    /// Makes the reads that follow linearizable: waits until this node has
    /// applied everything the leader had committed when asked.
    pub async fn read_barrier(&self) -> crate::Result<()> {
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let Route::Leader { id, name } = route else {
                return match tokio::time::timeout(left, self.raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(unavailable(format!("read barrier: {e}"))),
                    Err(_) => Err(unavailable("read barrier: the leader could not confirm its leadership")),
                };
            };
            match network::call(&name, &Request::ReadIndex, left).await {
                Ok(Reply::ReadIndex(Ok(index))) => {
                    return self.hub.applied_at_least(index, left.max(Duration::from_secs(1))).await
                }
                // Asking again changes nothing: retry while the leader is not reachable or not leading.
                Ok(Reply::ReadIndex(Err(_))) | Err(network::CallError::NoRoute(_) | network::CallError::Lost(_)) => {
                    self.await_leader_change(id, deadline).await?
                }
                Ok(_) => return Err(unavailable("the leader sent an unexpected reply")),
                Err(e) => return Err(unavailable(format!("read barrier: {e}"))),
            }
        }
    }

    /// Runs `local` if this node leads, else sends `request` to the leader.
    pub(super) async fn at_leader<T, F, Fut>(
        &self,
        request: Request,
        what: &str,
        local: F,
        unwrap: fn(Reply) -> Option<crate::Result<T>>,
    ) -> crate::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = crate::Result<T>>,
    {
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(10));
            let Route::Leader { id, name: leader } = route else { return local().await };
            match network::call(&leader, &request, left).await {
                Ok(reply) => {
                    return unwrap(reply).unwrap_or_else(|| Err(unavailable("the leader sent an unexpected reply")))
                }
                Err(network::CallError::NoRoute(_)) => self.await_leader_change(id, deadline).await?,
                Err(e) => return Err(unavailable(format!("{what}: {e}"))),
            }
        }
    }
}
