//! citypass-gate (being built).
