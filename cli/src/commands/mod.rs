//! One module per command.

pub mod admin;
pub mod app;
pub mod clock;
pub mod demo;
pub mod dev;
pub mod gate;
pub mod keys;
pub mod payments;
pub mod pki;
pub mod token;
