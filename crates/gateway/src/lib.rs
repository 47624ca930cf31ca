//! The HTTP gateway: browsers fetch a log's signed head and ranges of blocks with a Merkle
//! range proof, and verify both themselves (`web/`), so any node can serve any reader.
//!
//! This crate owns the HTTP API (`protocol/gateway.md`) and the range-proof format
//! ([`range`]): building proofs from a log's tree nodes, and a Rust verifier (used by tests,
//! fuzzing, and any Rust client). It does not own the logs: the node lends its open cores
//! through [`LogSource`] ([`Cores`] is a ready implementation over shared
//! `Arc<Mutex<Core>>`). It does not sign, replicate or discover peers.
//!
//! - [`api`]: the log routes' answers without a transport ([`api::Api`]: a request path in,
//!   status, content type and body out), shared by HTTP and the WebRTC data channels;
//! - [`blob`]: files of app logs by their SHA-256 (`GET /v1/blob/{sha256}`): the index of
//!   hashes a node keeps, bounded;
//! - [`cache`]: the answers kept (immutable ranges with their gzip and br forms, heads until
//!   their log changes), bounded by bytes;
//! - [`router`]: the axum routes, CORS, caching headers, per-client concurrency limits;
//! - [`serve`]: the router on a TCP listener with bounded connections and an idle timeout;
//! - [`range`]: the `PHR1` range proof: [`range::prove`], [`range::verify`];
//! - [`set`]: the `PHS1` set proof (scattered blocks, one shared proof): [`set::prove`],
//!   [`set::verify`];
//! - [`instance`]: what a community's instance adds: the bootstrap page and JSON, peers that
//!   register and are health-checked, their reports of what they served;
//! - [`report`]: readers' reports of peers that served bad data, and the checks they trigger;
//! - [`signal`]: WebRTC signaling through the instance: home peers' long-polls, browsers'
//!   offers and the peers' signed answers, health checks through the poll;
//! - [`forwarded`]: the client behind a trusted reverse proxy (`X-Forwarded-For`);
//! - [`client`]: the minimal HTTP client gateways use to check and report to each other;
//! - [`auth`]: signed requests and key challenges (how a node proves its key over HTTP);
//! - [`address`]: canonical peer URLs, resolving once, and which addresses an instance may
//!   connect to (no requests to loopback or private networks on anyone's behalf).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use peerhost_gateway::{Config, Cores, ServeOptions};
//!
//! // The node shares its cores: `cores.insert(key, arc_mutex_core)` as it opens them.
//! let cores = Cores::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let shutdown = std::future::pending::<()>(); // e.g. the node's shutdown signal
//! peerhost_gateway::serve(listener, cores, Config::default(), ServeOptions::default(), shutdown)
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod address;
pub mod api;
pub mod auth;
pub mod blob;
pub mod cache;
pub mod client;
pub mod forwarded;
mod http;
pub mod instance;
mod limit;
mod listener;
pub mod range;
pub mod report;
pub mod set;
pub mod signal;
mod site;
mod source;
#[cfg(feature = "tls")]
pub mod tls;

pub use forwarded::{Cidr, TrustedProxies};
pub use http::{BOOTSTRAP_PEERS, Config, IMMUTABLE, MAX_PEERS, RANGE_PROOF_TYPE, router};
pub use instance::{
    CommunityInfo, Contribution, Counters, Instance, InstanceOptions, RegisterError, Registered,
    run_checks, run_reporter,
};
#[cfg(feature = "tls")]
pub use listener::serve_tls;
pub use listener::{ClientAddr, Conn, Limited, ServeOptions, Stream, serve};
pub use range::{RangeProof, RangeProofError, TrustedHead};
pub use report::{ReportLimits, Reports};
pub use signal::{IceServer, SignalLimits};
pub use site::{MAX_SITE_BYTES, MAX_SITE_FILES, NO_RTC_DOCUMENT, Site, SiteError};
pub use source::{
    Cores, HeadVersion, LogSource, RangeError, RangeQuery, SetQuery, SignedHead, SourceError,
    prove_range, prove_set,
};
