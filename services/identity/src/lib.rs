//! citypass-identity (being built).
