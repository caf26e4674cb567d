pub use warden_actors;
