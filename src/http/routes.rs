//! The route table: every endpoint's method and path, written once. A
//! request resolves to an `Endpoint` and its path parameters; a path that
//! matches some route under another method is a 405, anything else a 404.

use warp::http::Method;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Dashboard,
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
    Timeline,
    Graph,
    EventStream,
}

/// One route: `pattern` is the path's segments, `{}` for a parameter.
struct Route {
    method: Method,
    pattern: &'static [&'static str],
    endpoint: Endpoint,
}

const fn route(method: Method, pattern: &'static [&'static str], endpoint: Endpoint) -> Route {
    Route { method, pattern, endpoint }
}

/// A path parameter.
const P: &str = "{}";

static ROUTES: &[Route] = &[
    route(Method::GET, &[], Endpoint::Dashboard),
    route(Method::GET, &["metrics"], Endpoint::Metrics),
    route(Method::GET, &["v1", "health"], Endpoint::Health),
    route(Method::GET, &["v1", "cluster"], Endpoint::Cluster),
    route(Method::GET, &["v1", "cluster", "digest"], Endpoint::Digest),
    route(Method::DELETE, &["v1", "cluster", "members", P], Endpoint::RemoveMember),
    route(Method::POST, &["v1", "cluster", "members"], Endpoint::AddMember),
    route(Method::POST, &["v1", "cluster", "nodes", P, "drain"], Endpoint::Drain),
    route(Method::DELETE, &["v1", "cluster", "nodes", P, "drain"], Endpoint::Undrain),
    route(Method::POST, &["v1", "cluster", "leader"], Endpoint::TransferLeader),
    route(Method::GET, &["v1", "capabilities"], Endpoint::Capabilities),
    route(Method::POST, &["v1", "sessions", P, "turns"], Endpoint::OpenTurn),
    route(Method::GET, &["v1", "sessions"], Endpoint::Sessions),
    route(Method::POST, &["v1", "turns", P, "model-calls"], Endpoint::ModelCall),
    route(Method::PUT, &["v1", "memory", P, P], Endpoint::PutMemory),
    route(Method::GET, &["v1", "memory", P, P], Endpoint::GetMemory),
    route(Method::GET, &["v1", "memory", P], Endpoint::Recall),
    route(Method::POST, &["v1", "actions"], Endpoint::Submit),
    route(Method::GET, &["v1", "actions", P], Endpoint::GetAction),
    route(Method::POST, &["v1", "actions", P, "confirmation"], Endpoint::Confirm),
    route(Method::GET, &["v1", "dlq"], Endpoint::Dlq),
    route(Method::POST, &["v1", "dlq", P, "replay"], Endpoint::Replay),
    route(Method::GET, &["v1", "dlq", P, "provenance"], Endpoint::Provenance),
    route(Method::GET, &["v1", "breakers"], Endpoint::Breakers),
    route(Method::GET, &["v1", "slo"], Endpoint::Slo),
    route(Method::GET, &["v1", "timeline"], Endpoint::Timeline),
    route(Method::GET, &["v1", "correlations", P, "graph"], Endpoint::Graph),
    route(Method::GET, &["v1", "events", "stream"], Endpoint::EventStream),
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

/// The endpoint `method` and the path segments `seg` ask for, with its parameters in order.
pub fn resolve<'s>(method: &Method, seg: &[&'s str]) -> Result<(Endpoint, Vec<&'s str>), Unrouted> {
    let mut path_known = false;
    for r in ROUTES {
        if let Some(params) = matches(r.pattern, seg) {
            if r.method == *method {
                return Ok((r.endpoint, params));
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
        let (e, p) = resolve(&Method::POST, &["v1", "cluster", "nodes", "b", "drain"]).unwrap();
        assert_eq!((e, p), (Endpoint::Drain, vec!["b"]));
        let (e, p) = resolve(&Method::GET, &["v1", "memory", "agent-1", "team"]).unwrap();
        assert_eq!((e, p), (Endpoint::GetMemory, vec!["agent-1", "team"]));
        assert_eq!(resolve(&Method::GET, &[]).unwrap().0, Endpoint::Dashboard);
    }

    #[test]
    fn a_known_path_under_another_method_is_not_allowed_and_an_unknown_one_not_found() {
        assert_eq!(resolve(&Method::DELETE, &["v1", "actions"]), Err(Unrouted::MethodNotAllowed));
        assert_eq!(resolve(&Method::POST, &["v1", "memory", "ns"]), Err(Unrouted::MethodNotAllowed));
        assert_eq!(resolve(&Method::GET, &["v1", "nope"]), Err(Unrouted::NotFound));
        assert_eq!(resolve(&Method::GET, &["v1", "actions", "a", "b"]), Err(Unrouted::NotFound));
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
