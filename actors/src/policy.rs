//! The `PolicyStore` actor: it answers what the active policy is (engine,
//! bundle hash and revision, files). Decisions do not pass through it —
//! they read the runtime's `PolicySlot` directly (`authz`), in parallel —
//! but replacing the active policy belongs here.

use crate::authz::PolicySummary;
use crate::directory::{ActorName, ChildSpec};
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use std::sync::Arc;

#[derive(RactorMessage)]
pub enum PolicyMsg {
    /// What the active policy is.
    Active(RpcReplyPort<PolicySummary>),
}

pub struct PolicyStore;

/// The actor's name in the node's directory.
pub const NAME: ActorName<PolicyMsg> = ActorName::new("policy_store");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (PolicyStore, rt.clone()))
}

impl Actor for PolicyStore {
    type Msg = PolicyMsg;
    type State = Arc<Runtime>;
    type Arguments = Arc<Runtime>;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, rt: Arc<Runtime>) -> Result<Self::State, ActorProcessingErr> {
        Ok(rt)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        rt: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PolicyMsg::Active(reply) => {
                let _ = reply.send(rt.policy.active().summary());
            }
        }
        Ok(())
    }
}
