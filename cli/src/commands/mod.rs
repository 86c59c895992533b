//! One module per command.

pub mod clock;
pub mod demo;
pub mod keys;
pub mod token;
