//! The warden node: CLI support, configuration and the built-in catalog. The
//! actors, state machine and domain live in `warden-actors`.

pub mod catalog;

pub use warden_actors;
