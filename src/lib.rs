//! udplab: what UDP does to a file transfer, measured.
//!
//! # Layout
//! - [`protocol`]: the wire formats of the transfer, no I/O: [`protocol::lab`]
//!   (the original lab's bytes) and [`protocol::v1`] (ours, sequenced).
//! - [`engine`]: the transfer's rules as plain structs fed with events and
//!   time, no I/O: pacing, the reliable mode's adaptive rate, the server's
//!   repair book and the client's reception book.
//! - [`server`]: accept and register clients over TCP, hold them at a barrier,
//!   then one paced sender thread per client sends the file over UDP (blast,
//!   or reliable with repair rounds).
//! - [`admission`]: what the server lets in while clients register: client
//!   numbers taken back and reused, registration slots shared out by
//!   address, the pause in accepting when file descriptors run out.
//! - [`client`]: register, receive, store the file safely, report and log.
//! - [`transfer_log`]: write our logs; read ours and the lab's.
//! - [`net`]: socket helpers beyond std: batched send/receive, buffer sizes,
//!   the kernel's per-socket drop counters.
//! - [`analyze`]: captures of a run (pcap/pcapng) and its logs -> where each
//!   client's bytes went: reader, decoder, TCP and UDP tables, correlation,
//!   report.
//! - [`wire`]: views of captured bytes that etherparse has no slice for:
//!   the BSD loopback and Linux cooked link layers, the IPv6 fragment
//!   header; no I/O.
//! - [`pcapng`]: pcapng's block types, block layout and option codes,
//!   written once for the analyzer's reader and the capture's writer; no
//!   I/O.
//! - [`capture`]: live capture through libpcap (cargo feature `capture`)
//!   into pcapng with the capture's own drop counts.
//! - [`lab`]: the whole experiment: test file, server, capture, N clients,
//!   analysis; on loopback, or (`--link`) on a path of network namespaces,
//!   server host -> router -> client host, captured at both hosts, each
//!   place's loss checked against the kernel's own counters.
//! - [`headers`]: the second lab, a cache of HTTP response headers asked
//!   for over TCP and answered over UDP; its server and client.
//! - [`shutdown`]: a cloneable stop signal for the long-running loops.

pub mod admission;
pub mod analyze;
pub mod capture;
pub mod client;
pub mod control;
pub mod engine;
pub mod headers;
pub mod lab;
pub mod net;
pub mod pcapng;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod transfer_log;
pub mod wire;
