//! citypass-runtime (being built).
