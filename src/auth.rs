//! Who may do what: bearer tokens, each with a name and a role
//! (`agent` < `operator` < `admin`). A token file (`token_file` in the node
//! config, written by `warden token create`) holds each token's name, role
//! and SHA-256 hash — never the token itself. A request's token is hashed and
//! compared with every stored hash in constant time; tokens are never logged
//! and never recorded, only the principal's name is.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;

/// What a principal may do; each role may do everything the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sessions, turns, model calls, memory, submitting actions and reading them.
    Agent,
    /// Confirmations, DLQ replay, drain, and reads of the cluster, timeline, graph, metrics.
    Operator,
    /// Membership and leadership changes (and policy changes).
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Agent, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .with_context(|| format!("no role {s:?}: agent, operator or admin"))
    }
}

/// Who may call an endpoint: every route of the table names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, token or not (`/v1/health`, the dashboard page).
    Open,
    /// `/metrics`: open when `metrics_open` (the default), else operators.
    Metrics,
    /// This role or a higher one.
    Role(Role),
}

impl Access {
    /// The role a request needs on a node with tokens; `None`: none at all.
    pub fn required(self, metrics_open: bool) -> Option<Role> {
        match self {
            Access::Open => None,
            Access::Metrics if metrics_open => None,
            Access::Metrics => Some(Role::Operator),
            Access::Role(r) => Some(r),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// One entry of the token file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// The token file: `[[token]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(default)]
    pub token: Vec<TokenEntry>,
}

/// The tokens a node accepts.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<(Principal, [u8; 32])>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and roles only: hashes stay out of logs too.
        let names: Vec<_> = self.entries.iter().map(|(p, _)| format!("{}:{}", p.name, p.role)).collect();
        f.debug_struct("Tokens").field("principals", &names).finish()
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A principal's name: letters, digits, `-`, `_`, `.`, `@`; 1 to 64 of them.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

impl Tokens {
    pub fn from_file(file: &TokenFile) -> anyhow::Result<Tokens> {
        let mut entries = Vec::new();
        for t in &file.token {
            if !valid_name(&t.name) {
                bail!("token name {:?} must be 1-64 letters, digits, - _ . @", t.name);
            }
            if entries.iter().any(|(p, _): &(Principal, _)| p.name == t.name) {
                bail!("token name {:?} appears twice", t.name);
            }
            let hash = unhex(&t.sha256).with_context(|| format!("token {:?}: sha256 must be 64 hex digits", t.name))?;
            entries.push((Principal { name: t.name.clone(), role: t.role }, hash));
        }
        if entries.is_empty() {
            bail!("the token file has no [[token]] entries: create one with `warden token create`");
        }
        Ok(Tokens { entries })
    }

    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: TokenFile =
            toml::from_str(&text).with_context(|| format!("invalid token file {}", path.display()))?;
        Tokens::from_file(&file).with_context(|| format!("in {}", path.display()))
    }

    /// The principal `token` belongs to. Every stored hash is compared, in
    /// constant time, whatever matches: the time taken says nothing of which.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let hash = sha256(token);
        let mut found = None;
        for (principal, stored) in &self.entries {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A fresh token: `wdn_` and 32 bytes from the operating system's CSPRNG, in hex.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(format!("wdn_{}", hex(&bytes)))
}

/// Adds a token for `name` with `role` to the token file at `path` (created
/// if missing); returns the token, which is stored nowhere but in its hash.
pub fn create_token(path: &Path, name: &str, role: Role) -> anyhow::Result<String> {
    if !valid_name(name) {
        bail!("--name must be 1-64 letters, digits, - _ . @; got {name:?}");
    }
    let mut file: TokenFile = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid token file {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if file.token.iter().any(|t| t.name == name) {
        bail!("{} already has a token named {name:?}", path.display());
    }
    let token = generate_token()?;
    file.token.push(TokenEntry { name: name.to_owned(), role, sha256: hex(&sha256(&token)) });
    let text = toml::to_string(&file).context("cannot encode the token file")?;
    write_private(path, &text)?;
    Ok(token)
}

/// Writes `text` to `path`, readable by its owner only (on unix).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// An HTTP client for the API that sends `token` (if any) with every request
/// and trusts the certificates of `ca` (if any) for HTTPS.
pub fn client(timeout: std::time::Duration, token: Option<&str>, ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .context("the token must be printable ASCII")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder().timeout(timeout).default_headers(headers);
    if let Some(ca) = ca {
        for cert in crate::tls::reqwest_roots(ca)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_authenticates_as_its_principal_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let admin = create_token(&path, "ops", Role::Admin).unwrap();
        let agent = create_token(&path, "bot-1", Role::Agent).unwrap();
        assert!(admin.starts_with("wdn_") && admin.len() == 68 && admin != agent);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&admin[4..]) && !text.contains(&agent[4..]), "{text}");
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.authenticate(&admin), Some(Principal { name: "ops".into(), role: Role::Admin }));
        assert_eq!(tokens.authenticate(&agent).map(|p| p.role), Some(Role::Agent));
        assert_eq!(tokens.authenticate("wdn_00"), None);
        assert_eq!(tokens.authenticate(&admin[..67]), None);
        let err = create_token(&path, "ops", Role::Agent).unwrap_err();
        assert!(format!("{err:#}").contains("already"), "{err:#}");
        assert!(!format!("{tokens:?}").contains(&text[text.find("sha256").unwrap() + 10..][..16]));
    }

    #[test]
    fn roles_are_ordered_and_routes_ask_for_one() {
        assert!(Role::Agent < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Access::Metrics.required(true), None);
        assert_eq!(Access::Metrics.required(false), Some(Role::Operator));
        assert_eq!(Access::Role(Role::Admin).required(true), Some(Role::Admin));
        assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn a_bad_token_file_is_refused_clearly() {
        let bad = TokenFile { token: vec![TokenEntry { name: "x".into(), role: Role::Agent, sha256: "zz".into() }] };
        assert!(format!("{:#}", Tokens::from_file(&bad).unwrap_err()).contains("64 hex"));
        assert!(format!("{:#}", Tokens::from_file(&TokenFile::default()).unwrap_err()).contains("no [[token]]"));
    }
}
