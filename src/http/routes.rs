//! The route table: every endpoint's method, path and access (who may call
//! it), written once. A request resolves to an `Endpoint`, its access and its
//! path parameters; a path that matches some route under another method is a
//! 405, anything else a 404. A route cannot be written without its access.

use crate::auth::{Access, Role};
use warp::http::Method;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Dashboard,
    /// The dashboard's vendored libraries (`static/vendor/`).
    Vendor,
    Metrics,
    Health,
    Cluster,
    Digest,
    RemoveMember,
    AddMember,
    Drain,
    Undrain,
    TransferLeader,
    Capabilities,
    OpenTurn,
    Sessions,
    ModelCall,
    PutMemory,
    GetMemory,
    Recall,
    Submit,
    GetAction,
    Confirm,
    Dlq,
    Replay,
    Provenance,
    Breakers,
    Slo,
    Alerts,
    Timeline,
    Incidents,
    Graph,
    EventStream,
    Policies,
    PolicyDecide,
    PushPolicy,
    RollbackPolicy,
    PolicyAudit,
    Mcp,
}

/// One route: `pattern` is the path's segments, `{}` for a parameter.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub pattern: &'static [&'static str],
    pub endpoint: Endpoint,
    pub access: Access,
}

const fn route(method: Method, pattern: &'static [&'static str], endpoint: Endpoint, access: Access) -> Route {
    Route { method, pattern, endpoint, access }
}

const OPEN: Access = Access::Open;
const AGENT: Access = Access::Role(Role::Agent);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

/// A path parameter.
const P: &str = "{}";

/// Every endpoint: its method, its path, who may call it.
pub static ROUTES: &[Route] = &[
    route(Method::GET, &[], Endpoint::Dashboard, OPEN),
    route(Method::GET, &["vendor", P], Endpoint::Vendor, OPEN),
    route(Method::GET, &["metrics"], Endpoint::Metrics, Access::Metrics),
    route(Method::GET, &["v1", "health"], Endpoint::Health, OPEN),
    route(Method::GET, &["v1", "cluster"], Endpoint::Cluster, OPERATOR),
    route(Method::GET, &["v1", "cluster", "digest"], Endpoint::Digest, OPERATOR),
    route(Method::DELETE, &["v1", "cluster", "members", P], Endpoint::RemoveMember, ADMIN),
    route(Method::POST, &["v1", "cluster", "members"], Endpoint::AddMember, ADMIN),
    route(Method::POST, &["v1", "cluster", "nodes", P, "drain"], Endpoint::Drain, OPERATOR),
    route(Method::DELETE, &["v1", "cluster", "nodes", P, "drain"], Endpoint::Undrain, OPERATOR),
    route(Method::POST, &["v1", "cluster", "leader"], Endpoint::TransferLeader, ADMIN),
    route(Method::GET, &["v1", "capabilities"], Endpoint::Capabilities, AGENT),
    route(Method::POST, &["v1", "sessions", P, "turns"], Endpoint::OpenTurn, AGENT),
    route(Method::GET, &["v1", "sessions"], Endpoint::Sessions, AGENT),
    route(Method::POST, &["v1", "turns", P, "model-calls"], Endpoint::ModelCall, AGENT),
    route(Method::PUT, &["v1", "memory", P, P], Endpoint::PutMemory, AGENT),
    route(Method::GET, &["v1", "memory", P, P], Endpoint::GetMemory, AGENT),
    route(Method::GET, &["v1", "memory", P], Endpoint::Recall, AGENT),
    route(Method::POST, &["v1", "actions"], Endpoint::Submit, AGENT),
    route(Method::GET, &["v1", "actions", P], Endpoint::GetAction, AGENT),
    route(Method::POST, &["v1", "actions", P, "confirmation"], Endpoint::Confirm, OPERATOR),
    route(Method::GET, &["v1", "dlq"], Endpoint::Dlq, OPERATOR),
    route(Method::POST, &["v1", "dlq", P, "replay"], Endpoint::Replay, OPERATOR),
    route(Method::GET, &["v1", "dlq", P, "provenance"], Endpoint::Provenance, OPERATOR),
    route(Method::GET, &["v1", "breakers"], Endpoint::Breakers, OPERATOR),
    route(Method::GET, &["v1", "slo"], Endpoint::Slo, OPERATOR),
    route(Method::GET, &["v1", "alerts"], Endpoint::Alerts, OPERATOR),
    route(Method::GET, &["v1", "timeline"], Endpoint::Timeline, OPERATOR),
    route(Method::GET, &["v1", "incidents"], Endpoint::Incidents, OPERATOR),
    route(Method::GET, &["v1", "correlations", P, "graph"], Endpoint::Graph, OPERATOR),
    route(Method::GET, &["v1", "events", "stream"], Endpoint::EventStream, OPERATOR),
    route(Method::GET, &["v1", "policies"], Endpoint::Policies, OPERATOR),
    route(Method::POST, &["v1", "policies", "decide"], Endpoint::PolicyDecide, AGENT),
    route(Method::PUT, &["v1", "policies"], Endpoint::PushPolicy, ADMIN),
    route(Method::POST, &["v1", "policies", "rollback"], Endpoint::RollbackPolicy, ADMIN),
    route(Method::GET, &["v1", "policies", "audit"], Endpoint::PolicyAudit, OPERATOR),
    route(Method::POST, &["mcp"], Endpoint::Mcp, AGENT),
];

/// Why a request matched no route.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrouted {
    NotFound,
    /// The path exists under other methods.
    MethodNotAllowed,
}

/// The parameters of `seg` under `pattern`, if it matches.
fn matches<'s>(pattern: &[&str], seg: &[&'s str]) -> Option<Vec<&'s str>> {
    if pattern.len() != seg.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(seg) {
        match *p {
            P => params.push(*s),
            lit if lit == *s => {}
            _ => return None,
        }
    }
    Some(params)
}

/// The route `method` and the path segments `seg` ask for, with its parameters in order.
pub fn resolve<'s>(method: &Method, seg: &[&'s str]) -> Result<(&'static Route, Vec<&'s str>), Unrouted> {
    let mut path_known = false;
    for r in ROUTES {
        if let Some(params) = matches(r.pattern, seg) {
            if r.method == *method {
                return Ok((r, params));
            }
            path_known = true;
        }
    }
    Err(if path_known { Unrouted::MethodNotAllowed } else { Unrouted::NotFound })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_resolves_to_its_endpoint_and_parameters() {
        let (r, p) = resolve(&Method::POST, &["v1", "cluster", "nodes", "b", "drain"]).unwrap();
        assert_eq!((r.endpoint, r.access, p), (Endpoint::Drain, OPERATOR, vec!["b"]));
        let (r, p) = resolve(&Method::GET, &["v1", "memory", "agent-1", "team"]).unwrap();
        assert_eq!((r.endpoint, r.access, p), (Endpoint::GetMemory, AGENT, vec!["agent-1", "team"]));
        assert_eq!(resolve(&Method::GET, &[]).unwrap().0.endpoint, Endpoint::Dashboard);
    }

    #[test]
    fn a_known_path_under_another_method_is_not_allowed_and_an_unknown_one_not_found() {
        let unrouted = |m: Method, seg: &[&str]| resolve(&m, seg).err();
        assert_eq!(unrouted(Method::DELETE, &["v1", "actions"]), Some(Unrouted::MethodNotAllowed));
        assert_eq!(unrouted(Method::POST, &["v1", "memory", "ns"]), Some(Unrouted::MethodNotAllowed));
        assert_eq!(unrouted(Method::GET, &["v1", "nope"]), Some(Unrouted::NotFound));
        assert_eq!(unrouted(Method::GET, &["v1", "actions", "a", "b"]), Some(Unrouted::NotFound));
    }

    #[test]
    fn only_health_the_dashboard_its_libraries_and_metrics_go_without_a_role_and_no_write_does() {
        for r in ROUTES {
            match r.access {
                Access::Open => {
                    assert!(matches!(r.endpoint, Endpoint::Health | Endpoint::Dashboard | Endpoint::Vendor), "{r:?}")
                }
                Access::Metrics => assert_eq!(r.endpoint, Endpoint::Metrics),
                Access::Role(_) => {}
            }
            if r.method != Method::GET {
                assert!(matches!(r.access, Access::Role(_)), "{r:?} writes without a role");
            }
        }
    }

    #[test]
    fn every_endpoint_has_exactly_one_route() {
        for r in ROUTES {
            let n = ROUTES.iter().filter(|o| o.endpoint == r.endpoint).count();
            assert_eq!(n, 1, "{:?} is routed {n} times", r.endpoint);
            let clash = ROUTES.iter().filter(|o| o.method == r.method && o.pattern == r.pattern).count();
            assert_eq!(clash, 1, "{} {:?} is routed twice", r.method, r.pattern);
        }
    }
}
