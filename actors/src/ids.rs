//! Identifiers. Each is a string newtype so that ids from clients (session
//! ids, correlation ids, idempotency keys) and ids warden generates (ULIDs with
//! a short prefix that says what they name) share one representation.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id warden accepts from a client; longer ones are bad input.
pub const MAX_ID_LEN: usize = 128;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A new, unique id (`<prefix>_<ulid>`).
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "_{}"), ulid::Ulid::new().to_string().to_lowercase()))
            }

            /// Wraps a client-supplied id after checking its length and alphabet.
            pub fn parse(raw: &str) -> Result<Self, crate::WardenError> {
                validate_id(stringify!($name), raw).map(|()| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An agent session; created implicitly by its first turn.
    SessionId, "ses");
string_id!(
    /// One turn of an agent (a unit of reasoning that may call models and tools).
    TurnId, "turn");
string_id!(
    /// Links every event caused by one turn, across nodes.
    CorrelationId, "cor");
string_id!(
    /// One submitted action (a tool call with side effects).
    ActionId, "act");
string_id!(
    /// One entry of the dead-letter queue.
    DlqId, "dlq");

/// The key a tool uses to make a repeated call have no second effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// The key used when the client supplies none: derived from the action id,
    /// so a re-dispatch of the same action always carries the same key.
    pub fn derived_from(action: &ActionId) -> Self {
        Self(format!("idem-{}", action.0))
    }

    pub fn parse(raw: &str) -> Result<Self, crate::WardenError> {
        validate_id("IdempotencyKey", raw).map(|()| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_id(what: &str, raw: &str) -> Result<(), crate::WardenError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if raw.is_empty() || raw.len() > MAX_ID_LEN || !raw.chars().all(ok_char) {
        return Err(crate::WardenError::BadInput(format!(
            "{what} must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9-_.:], got {raw:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_prefixed() {
        let a = ActionId::generate();
        let b = ActionId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("act_"));
    }

    #[test]
    fn client_ids_are_validated() {
        assert!(SessionId::parse("agent-7.session:1").is_ok());
        assert!(SessionId::parse("").is_err());
        assert!(SessionId::parse("has space").is_err());
        assert!(SessionId::parse(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
