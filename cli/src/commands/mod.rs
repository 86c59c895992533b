//! One module per command.

pub mod admin;
pub mod app;
pub mod clock;
pub mod counter;
pub mod demo;
pub mod dev;
pub mod face;
pub mod gate;
pub mod keys;
pub mod payments;
pub mod pki;
pub mod token;
