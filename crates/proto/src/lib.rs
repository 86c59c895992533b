//! citypass-proto (being built).
