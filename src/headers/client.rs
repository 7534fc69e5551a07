//! The header client: one session asking each name in order, each header
//! stored as `<name>.txt`, then `terminate`, closed first, and a log.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use log::{info, warn};

use super::{Answer, MAX_DATAGRAM, MAX_MESSAGE, Refusal, TERMINATE, is_host_name};
use crate::text::escape_peer_text;

#[derive(Debug, Clone)]
pub struct Config {
    /// The server's TCP address, HOST:PORT.
    pub server: String,
    /// Asked in order; repeats allowed.
    pub names: Vec<String>,
    /// Where the `<name>.txt` files go.
    pub out_dir: PathBuf,
    /// Where the client's log goes; none when `None`.
    pub log_dir: Option<PathBuf>,
    /// How long each answer (TCP or UDP) may take.
    pub timeout: Duration,
}

impl Config {
    pub fn new(server: String, names: Vec<String>) -> Config {
        Config {
            server,
            names,
            out_dir: PathBuf::from("."),
            log_dir: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What became of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The header came and is stored.
    Stored {
        udp_port: u16,
        udp_local: SocketAddr,
        path: PathBuf,
        bytes: usize,
    },
    /// The server answered with an error.
    Refused(Refusal),
    /// The answer did not come or could not be stored.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub result: Reply,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub tcp_local: SocketAddr,
    pub server: SocketAddr,
    pub queries: Vec<Query>,
    pub log_path: Option<PathBuf>,
}

impl Outcome {
    /// The client's log, `key: value`, to be written into `log_dir`: each
    /// stored file is named relative to that directory (`../clients/1/
    /// www.twitch.tv.txt`), so that the log and the files can be moved
    /// together (a run directory, a captures/ case); absolute where the two
    /// share no directory, or without `log_dir`.
    pub fn render(&self, log_dir: Option<&Path>) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "role: headers-client\nserver: {}\ntcp_local: {}\nqueries: {}",
            self.server,
            self.tcp_local,
            self.queries.len()
        );
        for (i, q) in self.queries.iter().enumerate() {
            let k = i + 1;
            let _ = writeln!(out, "query_{k}_name: {}", escape_peer_text(&q.name));
            let _ = match &q.result {
                Reply::Stored {
                    udp_port,
                    udp_local,
                    path,
                    bytes,
                } => writeln!(
                    out,
                    "query_{k}_answer: {udp_port}\nquery_{k}_udp_local: {udp_local}\nquery_{k}_bytes: {bytes}\nquery_{k}_file: {}",
                    // `udplab analyze --logs` reads the file beside the log.
                    stored_name(path, log_dir).display()
                ),
                Reply::Refused(r) => writeln!(out, "query_{k}_answer: {r}"),
                Reply::Failed(why) => {
                    writeln!(out, "query_{k}_failed: {}", escape_peer_text(why))
                }
            };
        }
        let _ = writeln!(
            out,
            "stored: {}\nend: terminated",
            self.queries
                .iter()
                .filter(|q| matches!(q.result, Reply::Stored { .. }))
                .count()
        );
        out
    }
}

/// `file` as the log in `log_dir` names it: relative to `log_dir` when the
/// two share its parent (`../clients/1/NAME.txt`), else absolute.
fn stored_name(file: &Path, log_dir: Option<&Path>) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let file = absolute(file);
    let Some(dir) = log_dir.map(absolute) else {
        return file;
    };
    if let Ok(inside) = file.strip_prefix(&dir) {
        return inside.to_path_buf();
    }
    match dir.parent().and_then(|up| file.strip_prefix(up).ok()) {
        Some(beside) => Path::new("..").join(beside),
        None => file,
    }
}

/// Runs one session. An error is one that ends the session (no
/// connection, the server gone); a name's own trouble is in its result.
pub fn run(cfg: &Config) -> anyhow::Result<Outcome> {
    let server = cfg
        .server
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", cfg.server))?
        .next()
        .with_context(|| format!("{} has no address", cfg.server))?;
    let mut stream = TcpStream::connect_timeout(&server, cfg.timeout)
        .with_context(|| format!("connecting to {server}"))?;
    stream.set_read_timeout(Some(cfg.timeout))?;
    let tcp_local = stream.local_addr()?;
    fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    let mut queries = Vec::new();
    for name in &cfg.names {
        let result = ask(&mut stream, server, tcp_local, name, cfg)?;
        match &result {
            Reply::Stored { path, bytes, .. } => {
                info!("{name}: {bytes} bytes in {}", path.display())
            }
            Reply::Refused(r) => warn!("{name}: the server answered {r:?}"),
            Reply::Failed(why) => warn!("{name}: {why}"),
        }
        queries.push(Query {
            name: name.clone(),
            result,
        });
    }
    stream.write_all(TERMINATE).context("sending terminate")?;
    // The client closes first.
    drop(stream);
    let mut outcome = Outcome {
        tcp_local,
        server,
        queries,
        log_path: None,
    };
    if let Some(dir) = &cfg.log_dir {
        let path = dir.join(format!("headers-client-{}.txt", tcp_local.port()));
        fs::create_dir_all(dir)
            .and_then(|()| fs::write(&path, outcome.render(Some(dir))))
            .with_context(|| format!("writing {}", path.display()))?;
        outcome.log_path = Some(path);
    }
    Ok(outcome)
}

/// One query: the name over TCP, the answer, and for a port the datagram
/// exchange and the file.
fn ask(
    stream: &mut TcpStream,
    server: SocketAddr,
    tcp_local: SocketAddr,
    name: &str,
    cfg: &Config,
) -> anyhow::Result<Reply> {
    stream
        .write_all(name.as_bytes())
        .with_context(|| format!("sending {name:?}"))?;
    let mut buf = [0u8; MAX_MESSAGE];
    let n = stream
        .read(&mut buf)
        .with_context(|| format!("reading the answer to {name:?}"))?;
    if n == 0 {
        anyhow::bail!("the server closed the session before answering {name:?}");
    }
    let udp_port = match Answer::parse(&buf[..n]) {
        Some(Answer::Port(p)) => p,
        Some(Answer::Refused(r)) => return Ok(Reply::Refused(r)),
        None => {
            return Ok(Reply::Failed(format!(
                "the answer {:?} is neither a port nor an error",
                String::from_utf8_lossy(&buf[..n])
            )));
        }
    };
    Ok(fetch_udp(server, udp_port, tcp_local, name, cfg)
        .unwrap_or_else(|e| Reply::Failed(format!("{e:#}"))))
}

fn fetch_udp(
    server: SocketAddr,
    udp_port: u16,
    tcp_local: SocketAddr,
    name: &str,
    cfg: &Config,
) -> anyhow::Result<Reply> {
    // A fresh ephemeral port for each query, as in the report.
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let udp = UdpSocket::bind(any).context("binding a UDP port")?;
    udp.connect(SocketAddr::new(server.ip(), udp_port))?;
    udp.set_read_timeout(Some(cfg.timeout))?;
    let udp_local = udp.local_addr()?;
    udp.send(&tcp_local.port().to_be_bytes())
        .context("sending the UDP request")?;
    let mut header = vec![0u8; MAX_DATAGRAM + 1];
    let n = udp.recv(&mut header).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            anyhow::anyhow!("no header within {:?}", cfg.timeout)
        }
        _ => anyhow::Error::new(e).context("receiving the header"),
    })?;
    header.truncate(n);
    // The name becomes a file name only when it is a host name: no path.
    if !is_host_name(name.as_bytes()) {
        anyhow::bail!("{name:?} is not a host name: not stored");
    }
    let path = cfg.out_dir.join(format!("{name}.txt"));
    write_whole(&path, &header)?;
    Ok(Reply::Stored {
        udp_port,
        udp_local,
        path,
        bytes: n,
    })
}

/// Writes through a temporary file and a rename: whole or absent.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("txt.{}.tmp", std::process::id()));
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}
