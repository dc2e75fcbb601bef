//! Driftless protocol v1: the wire types and the pure rules every part of Driftless shares.
//!
//! This crate knows nothing of HTTP or SQLite. It holds:
//! - [`adapter`]: the client adapter protocol of the client conformance kit (chapter 13);
//! - [`ids`]: the identifiers of spec chapter 02, valid by construction;
//! - [`hlc`]: hybrid logical clocks;
//! - [`messages`]: every wire message, from which `schemas/v1/` is generated ([`export`]);
//! - [`problem`]: RFC 9457 problem details and the catalogue of Problem types;
//! - [`merge`]: the conflict policies and the convergence rule as a join-semilattice;
//! - [`collection_schema`]: Collection Schemas, Policies, migrations and upcasting;
//! - [`canonical`] and [`checksum`]: RFC 8785 canonical JSON, Record digests and bucket checksums.
//!
//! The spec in `spec/` is normative; where this code and the spec disagree, the code is wrong.

pub mod adapter;
pub mod canonical;
pub mod checksum;
pub mod collection_schema;
pub mod export;
pub mod hlc;
pub mod ids;
pub mod merge;
pub mod messages;
pub mod problem;
