//! citypass-token (being built).
