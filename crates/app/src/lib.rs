//! The citizen app's side of citypass, as a library.
//!
//! What a phone does: enrol once, bind its device key by signing the server's
//! challenge, ask for a code with requests signed by that key, get a device
//! certificate for a fresh offline key, and make offline codes itself when the network
//! is gone. `citypass app` (the app simulator), `citypass dev` (which shows a demo
//! code), the end-to-end tests and the load generator all use this one
//! implementation, so they exercise the API exactly as a phone would.
//!
//! The device's secrets live in [`AppState`], which the caller persists (the CLI
//! writes it owner-only); nothing here does file I/O.
#![forbid(unsafe_code)]

mod client;
mod request_id;
mod state;

pub use client::{App, AppError, Endpoints};
pub use state::{AppState, OfflineState};
