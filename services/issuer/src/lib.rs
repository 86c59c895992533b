//! citypass-issuer (being built).
