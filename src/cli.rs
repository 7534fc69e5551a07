//! Command-line arguments (clap derive): one struct per subcommand, turned
//! into the validated configurations of the library.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use udplab::analyze::report::Format;
use udplab::protocol::{DEFAULT_PORT, Mode, Protocol};
use udplab::{client, lab, net, server};

#[derive(Debug, Parser)]
#[command(
    name = "udplab",
    version,
    about = "What UDP does to a file transfer, measured"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only warnings and errors on stderr, no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one file to N concurrent clients over UDP, round after round.
    Server(ServerArgs),
    /// Register with a server and receive its file.
    Client(ClientArgs),
    /// Say per client where a run's bytes were lost, from captures and logs.
    ///
    /// Reads captures of a run (pcap or pcapng, any of the usual link
    /// types) and the run's logs, and reports per client what the server
    /// sent, what the wire carried and what the client received.
    Analyze(AnalyzeArgs),
    /// Capture a run's traffic into pcapng, with the capture's own drop
    /// counts (libpcap; needs root or CAP_NET_RAW).
    ///
    /// By default it takes the TCP control port, UDP from the server's data
    /// ports and ICMP; control packets are kept whole and data datagrams to
    /// --snaplen bytes. Stops on Ctrl-C, --duration or --count.
    Capture(CaptureArgs),
    /// The whole experiment on loopback (or with --link on a path of
    /// network namespaces): server, N clients, capture, report.
    ///
    /// Makes a test file, starts the server, captures on lo, runs the
    /// clients at once, and analyzes the capture with the logs. With
    /// --link, the server and the clients are on two hosts joined by a
    /// router, captured at both, and each place's loss is checked against
    /// the kernel's counters. Everything lands in a fresh directory under
    /// --dir. `udplab lab headers` runs the second lab instead.
    Lab(LabArgs),
    /// The second lab: a cache of HTTP response headers, asked for over
    /// TCP and answered over UDP.
    #[command(subcommand)]
    Headers(HeadersCommand),
}

#[derive(Debug, Subcommand)]
pub enum HeadersCommand {
    /// Serve sessions of queries: a host name over TCP, the UDP port as
    /// the answer, the host's HTTP response header over UDP.
    Server(HeadersServerArgs),
    /// One session: ask each name in order, store each header as
    /// <NAME>.txt, then send "terminate" and close.
    Client(HeadersClientArgs),
}

#[derive(Debug, Args)]
pub struct HeadersServerArgs {
    /// TCP port the sessions connect to.
    #[arg(long, default_value_t = 50366)]
    pub port: u16,
    /// UDP port the headers are sent from (the answer to each query).
    #[arg(long, default_value_t = 50367)]
    pub udp_port: u16,
    /// Address to listen on (TCP and UDP).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// The cache file: read at the start, written back after each session.
    #[arg(long, default_value = "cache.txt")]
    pub cache: PathBuf,
    /// Send every HTTP request to this server (with the queried name as
    /// Host) instead of the host's port 80.
    #[arg(long, value_name = "HOST:PORT")]
    pub origin: Option<String>,
    /// How long the origin has for a whole header.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Close a session with no message for this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Directory for each session's log (none when absent).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HeadersClientArgs {
    /// The server's TCP address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:50366")]
    pub server: String,
    /// Directory the <NAME>.txt headers are stored in.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Directory for the session's log.
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
    /// How long each answer may take.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Host names to ask for, in order; repeats are answered by the cache.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

impl HeadersServerArgs {
    pub fn into_config(self) -> anyhow::Result<(TcpListener, udplab::headers::server::Config)> {
        use udplab::headers::origin::Origin;
        let origin = match &self.origin {
            None => Origin::Host,
            Some(o) => {
                use std::net::ToSocketAddrs;
                let addr = o
                    .to_socket_addrs()
                    .with_context(|| format!("--origin {o}"))?
                    .next()
                    .with_context(|| format!("--origin {o}: no address"))?;
                Origin::Fixed(addr)
            }
        };
        let listener = net::listen_tcp(SocketAddr::new(self.bind, self.port))
            .map_err(|e| control_port_error(self.bind, self.port, e))?;
        let mut cfg = udplab::headers::server::Config::new(
            SocketAddr::new(self.bind, self.udp_port),
            self.cache,
        );
        cfg.origin = origin;
        cfg.origin_timeout = self.timeout;
        cfg.idle_timeout = self.idle_timeout;
        cfg.log_dir = self.log_dir;
        Ok((listener, cfg))
    }
}

impl HeadersClientArgs {
    pub fn into_config(self) -> udplab::headers::client::Config {
        let mut cfg = udplab::headers::client::Config::new(self.server, self.names);
        cfg.out_dir = self.out;
        cfg.log_dir = Some(self.log_dir);
        cfg.timeout = self.timeout;
        cfg
    }
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Interface to capture on.
    #[arg(short = 'i', long, default_value = "lo")]
    pub interface: String,
    /// The pcapng file to write (written as FILE.part until complete).
    #[arg(short = 'w', long, value_name = "FILE")]
    pub write: PathBuf,
    /// A libpcap filter of one's own, instead of the run's default.
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,
    /// The run's TCP control port, for the default filter.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Bytes kept of each data datagram (of each packet with --filter).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub snaplen: u32,
    /// The kernel's capture buffer (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub buffer: u64,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many packets.
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub lab: Option<LabCommand>,
    /// Clients, run at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub clients: u16,
    /// Size of the test file made for the run (e.g. 100MiB).
    #[arg(long, default_value = "100MiB", value_parser = parse_size, conflicts_with = "file")]
    pub size: u64,
    /// Send this file instead of a made one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The protocol the clients speak.
    #[arg(long, value_enum, default_value = "v1")]
    pub protocol: Protocol,
    /// Where the run directories are made.
    #[arg(long, default_value = "runs")]
    pub dir: PathBuf,
    /// Do not capture; report from the logs alone.
    #[arg(long)]
    pub no_capture: bool,
    /// The original lab's six tests: 100 and 250 MiB, to 1, 5 and 10 clients.
    #[arg(long, conflicts_with_all = ["clients", "size", "file"])]
    pub suite: bool,
    /// Keep the made test file and the received files (deleted at the end
    /// by default).
    #[arg(long)]
    pub keep_files: bool,
    /// The TCP control port on 127.0.0.1 (with --link, on the server
    /// host's address); client k's data comes from port + k, so ports
    /// port..=port+clients must be free.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Each client's socket receive buffer (e.g. 64MiB); default: the
    /// kernel's.
    #[arg(long, value_parser = parse_size)]
    pub recv_buffer: Option<u64>,
    /// Bytes kept of each data datagram in the capture.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub snaplen: u32,
    /// The capture's kernel buffer.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub capture_buffer: u64,
    /// blast: each datagram once; reliable: repair rounds until every client
    /// confirms its file (v1 only).
    #[arg(long, value_enum, default_value = "blast")]
    pub mode: Mode,
    /// Ceiling of each client's sending rate (e.g. 200Mbit).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Run on a path instead of loopback: server host -> router -> client
    /// host in network namespaces (root), captured at both hosts, each
    /// place's loss checked against the kernel's own counters
    /// (docs/LINK.md). Any --link-* option implies it.
    #[arg(long)]
    pub link: bool,
    /// The router's bottleneck towards the clients, a tbf (e.g. 200Mbit).
    #[arg(long, value_parser = parse_rate)]
    pub link_rate: Option<f64>,
    /// The bottleneck's queue, tbf's limit (e.g. 256KiB). [default: 20 ms
    /// at --link-rate, at least 64KiB]
    #[arg(long, value_parser = parse_size, requires = "link_rate")]
    pub link_buffer: Option<u64>,
    /// Random loss of the UDP datagrams towards the clients, in percent
    /// (e.g. 1%), by an iptables rule in the router.
    #[arg(long, value_parser = parse_percent)]
    pub link_loss: Option<f64>,
    /// Instead of udplab's server and clients, run this shell command in
    /// the server host of the --link path (to its end), with
    /// UDPLAB_SERVER_IP and UDPLAB_CLIENT_IP set; the path's counters are
    /// printed as JSON (scripts/bench-link, docs/LINK.md).
    #[arg(long, value_name = "CMD", requires = "link_rate", conflicts_with_all = ["suite", "cleanup"])]
    pub exec_server: Option<String>,
    /// With --exec-server: this command runs in the client host, started
    /// first (a receiver); it has 10 s after the server's ends.
    #[arg(long, value_name = "CMD", requires = "exec_server")]
    pub exec_client: Option<String>,
    /// With --exec-server: TCP segments to this port towards the clients
    /// are shaped and dropped as the UDP data are.
    #[arg(long, value_name = "PORT", requires = "exec_server")]
    pub exec_tcp_port: Option<u16>,
    /// Remove the namespaces and links that --link runs which are gone
    /// (killed) left behind, say what was removed, and exit.
    #[arg(long, conflicts_with_all = ["suite", "link", "link_rate", "link_buffer", "link_loss", "file"])]
    pub cleanup: bool,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// The second lab on loopback: a local HTTP origin, the header server,
    /// N clients at once asking names with repeats, capture, report.
    ///
    /// The origin answers every name with a head of its own (redirects,
    /// cookies, a long one); client k asks the names turned by k - 1
    /// places. Prints per client its queries, answers, hits and misses,
    /// and the origin's requests, one per distinct name. Everything lands
    /// in a fresh directory under --dir.
    Headers(HeadersLabArgs),
}

#[derive(Debug, Args)]
pub struct HeadersLabArgs {
    /// Clients, run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub clients: u16,
    /// Names each client asks, comma-separated, repeats allowed. [default:
    /// www.twitch.tv, www.google.cl, google.cl, www.twitch.tv,
    /// www.uchile.cl, example.org, www.reddit.com, www.google.cl,
    /// news.ycombinator.com, www.twitch.tv]
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub names: Vec<String>,
    /// Where the run directories are made.
    #[arg(long, default_value = "runs")]
    pub dir: PathBuf,
    /// Do not capture.
    #[arg(long)]
    pub no_capture: bool,
    /// The header server's TCP port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = lab::headers::DEFAULT_PORT)]
    pub port: u16,
    /// The header server's UDP port (0: any free one).
    #[arg(long, default_value_t = lab::headers::DEFAULT_UDP_PORT)]
    pub udp_port: u16,
    /// The local HTTP origin's port (0: any free one).
    #[arg(long, default_value_t = lab::headers::DEFAULT_ORIGIN_PORT)]
    pub origin_port: u16,
    /// The capture's kernel buffer.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub capture_buffer: u64,
}

impl HeadersLabArgs {
    pub fn into_config(self) -> anyhow::Result<lab::headers::Config> {
        let mut cfg = lab::headers::Config::new(self.clients);
        if !self.names.is_empty() {
            cfg.names = self.names.iter().map(|n| n.trim().to_owned()).collect();
        }
        if let Some(bad) = cfg
            .names
            .iter()
            .find(|n| !udplab::headers::is_host_name(n.as_bytes()))
        {
            bail!("--names: {bad:?} is not a host name");
        }
        cfg.dir = self.dir;
        cfg.capture = !self.no_capture;
        cfg.port = self.port;
        cfg.udp_port = self.udp_port;
        cfg.origin_port = self.origin_port;
        cfg.capture_buffer =
            usize::try_from(self.capture_buffer).context("--capture-buffer is too large")?;
        Ok(cfg)
    }
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files of one run (e.g. one made at the server and one at the
    /// client); several are merged by timestamp.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
    /// A directory of logs (or one log file); only the logs of the captured
    /// run are used. May be given several times.
    #[arg(long, value_name = "DIR")]
    pub logs: Vec<PathBuf>,
    /// The TCP control port of the run; the server sends client k's data
    /// from this port + k. [default: 5005, or when no connection to 5005 is
    /// in the capture, the port most connections were opened to]
    #[arg(long)]
    pub port: Option<u16>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// UDP payload of a full data datagram, in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65507))]
    pub chunk: u32,
    /// The UTC offset of the machine that wrote the lab's logs (e.g. -05:00):
    /// their file names hold its local time with no zone. Without it, the
    /// whole-hour offset that fits the most logs to the capture is used.
    #[arg(long, value_name = "OFFSET", allow_hyphen_values = true, value_parser = parse_utc_offset)]
    pub log_utc_offset: Option<chrono::FixedOffset>,
    /// Also list every TCP connection and UDP flow of the captures, udplab's
    /// or not: endpoints, frames and bytes each way, Wireshark's protocol
    /// names, TCP handshake and teardown, and the first payloads as hex and
    /// text with their printable share (docs/ANALYZE.md, "Conversations").
    #[arg(long)]
    pub conversations: bool,
}

fn parse_utc_offset(text: &str) -> Result<chrono::FixedOffset, String> {
    udplab::analyze::logs::parse_utc_offset(text)
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The file to send.
    #[arg(long)]
    pub file: PathBuf,
    /// Clients per round: the transfer starts when this many have registered.
    #[arg(long, default_value_t = 1)]
    pub clients: u16,
    /// TCP control port; client k's data comes from port + k.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen and send from.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Directory for the S<k>-... logs.
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
    /// Stop after this many rounds (default: serve until Ctrl-C).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Give up when a round has not filled within this time (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub barrier_timeout: Option<Duration>,
    /// Drop a connection that has not registered within this time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub register_timeout: Duration,
    /// Drop a connection that has not begun its port message within this
    /// time of getting its client number (at most --register-timeout): a
    /// client answers at once, and a silent connection holds a registration
    /// slot others need.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub first_byte_timeout: Duration,
    /// Registrations one client address (an IPv6 /64) may have under way at
    /// once; its further connections wait for one of them to end. Of the
    /// 256 registration slots, 64 are kept for addresses that hold none.
    #[arg(long, default_value_t = udplab::admission::DEFAULT_PER_ADDRESS as u16,
          value_parser = clap::value_parser!(u16)
              .range(1..=udplab::admission::MAX_PER_ADDRESS as i64))]
    pub per_address: u16,
    /// How long a v1 client may take to report what it received, and (reliable
    /// mode) go without feedback while a pass is sent.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub report_timeout: Duration,
    /// UDP payload of a v1 data datagram, its 16-byte header included.
    #[arg(long, default_value_t = udplab::protocol::v1::DEFAULT_DATAGRAM_SIZE)]
    pub datagram_size: u16,
    /// How v1 clients are served: blast sends each datagram once; reliable
    /// resends what the client reports missing until it confirms the file's
    /// SHA-256, at a rate adapted to its feedback. Lab clients always get
    /// the lab's transfer.
    #[arg(long, value_enum, default_value = "blast")]
    pub mode: Mode,
    /// Ceiling of each client's sending rate (e.g. 200Mbit, 1.5Gbit,
    /// 50MB/s). Default: no ceiling.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Reliable mode: give up on a client whose file is not confirmed within
    /// this time from the start of its transfer.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub deadline: Duration,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's control address, HOST[:PORT] (port 5005 when absent).
    #[arg(long)]
    pub server: String,
    /// Directory the received file is stored in.
    #[arg(long, default_value = "received")]
    pub out: PathBuf,
    /// Directory for the C<k>-... log.
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
    /// Speak the original lab's protocol (no sequence numbers, idle timeout).
    #[arg(long)]
    pub legacy: bool,
    /// Lab protocol: the transfer ends after this long with nothing received.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub idle_timeout: Duration,
    /// How long to wait for the round to fill and the data to start.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub start_timeout: Duration,
    /// Ask the kernel for this socket receive buffer (e.g. 8MiB); the
    /// granted size is logged. Default: the kernel's default.
    #[arg(long, value_parser = parse_size)]
    pub recv_buffer: Option<u64>,
}

/// `--recv-buffer` as the client's configuration takes it.
fn recv_buffer(bytes: Option<u64>) -> anyhow::Result<Option<usize>> {
    bytes
        .map(|b| usize::try_from(b).context("--recv-buffer is too large"))
        .transpose()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 30s, 2m)"))
}

/// A rate in bits per second: `200Mbit`, `1.5Gbit`, `800kbit`, `200M`
/// (bits), `200Mbps`, or in bytes: `50MB/s`, `8MiB/s`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a rate (write e.g. 200Mbit, 1.5Gbit, 50MB/s)"))?;
    let unit = unit.trim();
    let bytes = unit.ends_with("B/s") || unit.ends_with("iB/s");
    let lower = unit.to_ascii_lowercase();
    let prefix = lower
        .trim_end_matches("/s")
        .trim_end_matches("bps")
        .trim_end_matches("bit")
        .trim_end_matches("ib")
        .trim_end_matches('b');
    let mult = match (prefix, lower.contains("ib")) {
        ("", _) => 1.0,
        ("k", false) => 1e3,
        ("m", false) => 1e6,
        ("g", false) => 1e9,
        ("k", true) => 1024.0,
        ("m", true) => 1024.0 * 1024.0,
        ("g", true) => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "unknown rate unit {unit:?} (use bit, kbit, Mbit, Gbit, or MB/s)"
            ));
        }
    };
    let bits = n * mult * if bytes { 8.0 } else { 1.0 };
    if !(bits.is_finite() && bits >= 1e6) {
        return Err(format!("{s}: the rate must be at least 1Mbit"));
    }
    Ok(bits)
}

/// A percentage, `1%`, `0.5%` or `2`, as a probability (0.01 for 1 %).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim();
    let p: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (write e.g. 1%, 0.5%)"))?;
    if !(p > 0.0 && p <= 100.0) {
        return Err(format!("{s}: the loss must be above 0 % and at most 100 %"));
    }
    Ok(p / 100.0)
}

/// `1048576`, `64KiB`, `8MiB`, `1GiB`, `100MB` (10^6), `4k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (write e.g. 65536, 64KiB, 8MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s} is too large"))
}

impl ServerArgs {
    /// Bind the control port and build the server's configuration.
    pub fn into_config(self, quiet: bool) -> anyhow::Result<(TcpListener, server::Config)> {
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.rounds == Some(0) {
            bail!("--rounds must be at least 1");
        }
        let listener = net::listen_tcp(SocketAddr::new(self.bind, self.port))
            .map_err(|e| control_port_error(self.bind, self.port, e))?;
        let mut cfg = server::Config::new(self.file, self.clients);
        cfg.bind_ip = self.bind;
        cfg.log_dir = self.log_dir;
        cfg.rounds = self.rounds;
        cfg.barrier_timeout = self.barrier_timeout;
        cfg.register_timeout = self.register_timeout;
        cfg.first_byte_timeout = self.first_byte_timeout;
        cfg.per_address = usize::from(self.per_address);
        cfg.report_timeout = self.report_timeout;
        cfg.datagram_size = self.datagram_size;
        cfg.progress = !quiet;
        cfg.mode = self.mode;
        cfg.rate = self.rate;
        cfg.deadline = self.deadline;
        Ok((listener, cfg))
    }
}

/// The control port could not be bound: the OS's reason, and when
/// connections in TIME_WAIT hold it (no SO_REUSEADDR can share the port
/// with those of a server that had none), what they are and when they go.
fn control_port_error(ip: IpAddr, port: u16, e: std::io::Error) -> anyhow::Error {
    match net::time_wait_hint(port, &e) {
        Some(hint) => anyhow::anyhow!("binding the control port {ip}:{port}: {e}: {hint}"),
        None => anyhow::anyhow!("binding the control port {ip}:{port}: {e}"),
    }
}

impl ClientArgs {
    pub fn into_config(self, quiet: bool) -> anyhow::Result<client::Config> {
        let mut cfg = client::Config::new(self.server);
        cfg.out_dir = self.out;
        cfg.log_dir = self.log_dir;
        cfg.legacy = self.legacy;
        cfg.idle_timeout = self.idle_timeout;
        cfg.start_timeout = self.start_timeout;
        cfg.recv_buffer = recv_buffer(self.recv_buffer)?;
        cfg.progress = !quiet;
        Ok(cfg)
    }
}

#[cfg(feature = "capture")]
impl CaptureArgs {
    pub fn into_config(self) -> anyhow::Result<udplab::capture::live::Config> {
        let mut cfg = udplab::capture::live::Config::new(self.interface, self.write);
        cfg.filter = self.filter;
        cfg.control_port = self.port;
        cfg.snaplen = self.snaplen;
        cfg.buffer = usize::try_from(self.buffer).context("--buffer is too large")?;
        cfg.duration = self.duration;
        cfg.count = self.count;
        Ok(cfg)
    }
}

impl LabArgs {
    pub fn into_config(self) -> anyhow::Result<lab::Config> {
        let link = self.link_shape()?;
        let source = match self.file {
            Some(path) => {
                if !path.is_file() {
                    bail!("--file {}: no such file", path.display());
                }
                lab::Source::File(path)
            }
            None if self.size == 0 => bail!("--size must be at least 1 byte"),
            None => lab::Source::Make { size: self.size },
        };
        let mut cfg = lab::Config::new(self.clients, source);
        cfg.protocol = self.protocol;
        cfg.dir = self.dir;
        cfg.capture = !self.no_capture;
        cfg.keep_files = self.keep_files;
        cfg.port = self.port;
        cfg.recv_buffer = recv_buffer(self.recv_buffer)?;
        cfg.snaplen = self.snaplen;
        cfg.capture_buffer =
            usize::try_from(self.capture_buffer).context("--capture-buffer is too large")?;
        if self.mode == Mode::Reliable && self.protocol == Protocol::Lab {
            bail!("--mode reliable needs v1 clients: the lab's protocol has no sequence numbers");
        }
        cfg.mode = self.mode;
        cfg.rate = self.rate;
        cfg.link = link;
        Ok(cfg)
    }

    /// The path's shape and the commands, with --exec-server.
    pub fn exec(&self) -> anyhow::Result<Option<(lab::link::Shape, lab::exec::Commands)>> {
        let Some(server) = self.exec_server.clone() else {
            return Ok(None);
        };
        let shape = self.link_shape()?.context("--exec-server needs --link")?;
        let cmds = lab::exec::Commands {
            server,
            client: self.exec_client.clone(),
        };
        Ok(Some((shape, cmds)))
    }

    /// The path's shape, when any --link option is given.
    pub fn link_shape(&self) -> anyhow::Result<Option<lab::link::Shape>> {
        let wanted = self.link
            || self.link_rate.is_some()
            || self.link_buffer.is_some()
            || self.link_loss.is_some();
        if !wanted {
            return Ok(None);
        }
        // A frame of 1514 bytes must fit the queue, or tbf drops them all.
        if let Some(b) = self.link_buffer
            && b < 1514
        {
            bail!("--link-buffer {b}: the queue must hold at least one 1514-byte frame");
        }
        Ok(Some(lab::link::Shape {
            rate_bit_s: self.link_rate,
            buffer_bytes: self.link_buffer,
            loss: self.link_loss,
            tcp_port: self.exec_tcp_port,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("1%"), Ok(0.01));
        assert_eq!(parse_percent("0.5 %"), Ok(0.005));
        assert_eq!(parse_percent("2"), Ok(0.02));
        assert_eq!(parse_percent("100%"), Ok(1.0));
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("150%").is_err());
        assert!(parse_percent("lots").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("200Mbit"), Ok(200e6));
        assert_eq!(parse_rate("200Mbps"), Ok(200e6));
        assert_eq!(parse_rate("200M"), Ok(200e6));
        assert_eq!(parse_rate("1.5Gbit"), Ok(1.5e9));
        assert_eq!(
            parse_rate("800kbit"),
            Err("800kbit: the rate must be at least 1Mbit".into())
        );
        assert_eq!(parse_rate("50MB/s"), Ok(400e6));
        assert_eq!(parse_rate("1MiB/s"), Ok(8.0 * 1024.0 * 1024.0));
        assert_eq!(parse_rate("2000000"), Ok(2e6));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 furlongs").is_err());
        assert!(parse_rate("1e999Gbit").is_err());
    }
}
