//! The header logs read back: what [`server::Session::render`] and
//! [`client::Outcome::render`] write, parsed into the facts the analyzer
//! ties to a captured session (the client's TCP address, each query's
//! name, the server's hit or miss, the client's stored file).
//!
//! [`server::Session::render`]: super::server::Session::render
//! [`client::Outcome::render`]: super::client::Outcome::render

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The first line of a server session's log.
pub const SERVER_ROLE: &str = "role: headers-server";
/// The first line of a client's log.
pub const CLIENT_ROLE: &str = "role: headers-client";

/// How the server answered one query, as its log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheResult {
    Hit,
    Miss,
    Refused,
}

impl CacheResult {
    fn parse(s: &str) -> Option<CacheResult> {
        match s {
            "hit" => Some(CacheResult::Hit),
            "miss" => Some(CacheResult::Miss),
            "refused" => Some(CacheResult::Refused),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Refused => "refused",
        }
    }
}

/// One server session's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLog {
    /// The client's TCP address, as the server saw it.
    pub client: SocketAddr,
    /// Each query's name and result, in order.
    pub queries: Vec<(String, Option<CacheResult>)>,
}

/// One client's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLog {
    /// The client's own end of its TCP connection.
    pub tcp_local: SocketAddr,
    pub server: SocketAddr,
    /// Each query's name and the file its header was stored in, if it was.
    pub queries: Vec<(String, Option<PathBuf>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadersLog {
    Server(ServerLog),
    Client(ClientLog),
}

impl HeadersLog {
    /// The log as read from a file in `dir`: a stored file named relative
    /// to the log (as the client writes it) is found from `dir`.
    pub fn found_from(mut self, dir: &Path) -> HeadersLog {
        if let HeadersLog::Client(c) = &mut self {
            for file in c.queries.iter_mut().filter_map(|(_, f)| f.as_mut()) {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        self
    }
}

/// Whether `head` (a file's first bytes) begins like a header log.
pub fn looks_like(head: &[u8]) -> bool {
    head.starts_with(SERVER_ROLE.as_bytes()) || head.starts_with(CLIENT_ROLE.as_bytes())
}

/// A header log's text; `Err` says what is missing or wrong.
pub fn parse(text: &str) -> Result<HeadersLog, String> {
    let mut lines = text.lines();
    let role = lines.next().unwrap_or_default();
    let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(": ")).collect();
    let addr = |key: &str| -> Result<SocketAddr, String> {
        let v = fields.get(key).ok_or_else(|| format!("no {key:?} line"))?;
        v.parse().map_err(|_| format!("{key} {v:?} is not ip:port"))
    };
    let count: usize = fields
        .get("queries")
        .ok_or("no \"queries\" line")?
        .parse()
        .map_err(|_| "\"queries\" is not a number")?;
    // One query per line group: a count larger than the text is a lie.
    if count > text.len() {
        return Err(format!("{count} queries in {} bytes", text.len()));
    }
    let name = |k: usize| -> String {
        fields
            .get(format!("query_{k}_name").as_str())
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    match role {
        SERVER_ROLE => Ok(HeadersLog::Server(ServerLog {
            client: addr("client")?,
            queries: (1..=count)
                .map(|k| {
                    let result = fields
                        .get(format!("query_{k}_result").as_str())
                        .and_then(|r| CacheResult::parse(r));
                    (name(k), result)
                })
                .collect(),
        })),
        CLIENT_ROLE => Ok(HeadersLog::Client(ClientLog {
            tcp_local: addr("tcp_local")?,
            server: addr("server")?,
            queries: (1..=count)
                .map(|k| {
                    let file = fields
                        .get(format!("query_{k}_file").as_str())
                        .map(PathBuf::from);
                    (name(k), file)
                })
                .collect(),
        })),
        other => Err(format!("{other:?} is not a header log's role line")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::{self, Reply};
    use super::super::server::{End, Outcome, Query, Session};
    use super::super::{Refusal, client::Query as ClientQuery};
    use super::*;

    #[test]
    fn a_server_log_reads_back() {
        let s = Session {
            peer: "127.0.0.1:40000".parse().unwrap(),
            queries: vec![
                Query {
                    name: "a.test".into(),
                    outcome: Outcome::Miss(10),
                },
                Query {
                    name: "a.test".into(),
                    outcome: Outcome::Hit(10),
                },
                Query {
                    name: "bad name".into(),
                    outcome: Outcome::Refused(Refusal::NotAHostName),
                },
            ],
            end: End::Terminated,
            cache_saved: true,
        };
        let log = parse(&s.render()).unwrap();
        assert_eq!(
            log,
            HeadersLog::Server(ServerLog {
                client: s.peer,
                queries: vec![
                    ("a.test".into(), Some(CacheResult::Miss)),
                    ("a.test".into(), Some(CacheResult::Hit)),
                    ("bad name".into(), Some(CacheResult::Refused)),
                ],
            })
        );
    }

    #[test]
    fn a_client_log_reads_back_with_its_files() {
        let o = client::Outcome {
            tcp_local: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:50366".parse().unwrap(),
            queries: vec![
                ClientQuery {
                    name: "a.test".into(),
                    result: Reply::Stored {
                        udp_port: 50367,
                        udp_local: "127.0.0.1:41000".parse().unwrap(),
                        path: "/tmp/out/a.test.txt".into(),
                        bytes: 10,
                    },
                },
                ClientQuery {
                    name: "b.test".into(),
                    result: Reply::Refused(Refusal::OriginTimeout),
                },
            ],
            log_path: None,
        };
        let HeadersLog::Client(log) = parse(&o.render(None)).unwrap() else {
            panic!("not a client log");
        };
        assert_eq!(log.tcp_local, o.tcp_local);
        assert_eq!(
            log.queries,
            vec![
                ("a.test".into(), Some(PathBuf::from("/tmp/out/a.test.txt"))),
                ("b.test".into(), None),
            ]
        );
    }

    #[test]
    fn what_is_not_a_header_log_is_told() {
        assert!(parse("role: something\nqueries: 0\n").is_err());
        assert!(parse("role: headers-server\nqueries: 1\n").is_err());
        assert!(parse("role: headers-server\nclient: x\nqueries: 0\n").is_err());
        assert!(looks_like(b"role: headers-client\nserver"));
        assert!(!looks_like(b"udplab log"));
    }
}
