//! Live capture through libpcap into a pcapng file.
//!
//! [`Capture::open`] activates the interface and installs the filter, so
//! that a caller (the lab) knows the capture is live before it starts any
//! traffic; [`Capture::run`] then reads until told to stop, drains what
//! the kernel still holds, and writes libpcap's own counts into an
//! Interface Statistics Block.
//!
//! Reading: libpcap's memory-mapped ring (TPACKET_V3 on Linux: packets
//! packed into blocks of the ring, each handed over when full or after the
//! 50 ms block timeout) read in non-blocking mode, with our own `poll` on
//! its descriptor when the ring is empty, so that a stop request is seen
//! within one poll interval even on a quiet interface. On a stop the loop
//! keeps reading for [`DRAIN`], long enough for the kernel to hand over
//! the last, partly filled block (tcpdump loses that block when it is
//! interrupted without `--immediate-mode`); then it closes the kernel's
//! filter to every packet and reads the ring empty, so that libpcap's
//! counts, taken last, cover exactly the packets written or dropped.
//!
//! The file is written as `PATH.part` and renamed to `PATH` once the
//! statistics block is written and the data synced: a file under the
//! asked-for name is always complete.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, warn};

use super::filter::{DefaultFilter, Insn, inbound, splice};
use super::writer::{Interface, PcapngWriter, Stats, partial_name};
use crate::shutdown::Shutdown;

/// The block timeout asked of libpcap (TPACKET_V3's `tp_retire_blk_tov`).
const BLOCK_TIMEOUT_MS: i32 = 50;
/// How long the loop keeps reading after a stop request.
pub const DRAIN: Duration = Duration::from_millis(3 * BLOCK_TIMEOUT_MS as u64);
/// Bytes kept of the packets the default filter keeps whole.
pub const WHOLE: u32 = 65_535;
const WRITE_BUFFER: usize = 1 << 20;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to capture and where to write it.
#[derive(Debug, Clone)]
pub struct Config {
    pub interface: String,
    pub output: PathBuf,
    /// A libpcap filter expression; `None` takes the default filter of
    /// [`Config::control_port`].
    pub filter: Option<String>,
    pub control_port: u16,
    /// Bytes kept of each data datagram (of each packet, with a filter of
    /// one's own).
    pub snaplen: u32,
    /// The kernel ring buffer, in bytes.
    pub buffer: usize,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

impl Config {
    pub fn new(interface: impl Into<String>, output: impl Into<PathBuf>) -> Config {
        Config {
            interface: interface.into(),
            output: output.into(),
            filter: None,
            control_port: crate::protocol::DEFAULT_PORT,
            snaplen: 128,
            buffer: 64 << 20,
            duration: None,
            count: None,
        }
    }
}

/// Why a capture could not start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process may not open a packet socket.
    #[error(
        "no permission to capture on {interface} ({detail}): run as root (sudo), or give the \
         binary the right once with `sudo setcap cap_net_raw,cap_net_admin=eip {binary}`"
    )]
    Permission {
        interface: String,
        detail: String,
        binary: String,
    },
    /// libpcap does not know the interface.
    #[error("no interface {interface} to capture on ({detail})")]
    NoSuchInterface { interface: String, detail: String },
    /// The filter does not compile.
    #[error("bad capture filter {filter:?}: {detail}")]
    Filter { filter: String, detail: String },
    /// Any other libpcap failure.
    #[error("capture on {interface}: {detail}")]
    Pcap { interface: String, detail: String },
    /// The output file could not be written.
    #[error("writing {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
}

impl Error {
    /// True when the process lacks the right to capture.
    pub fn is_permission(&self) -> bool {
        matches!(self, Error::Permission { .. })
    }
}

/// What a finished capture wrote and what libpcap counted.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    pub interface: String,
    pub filter: String,
    /// Packets written to the file.
    pub packets: u64,
    /// Bytes of packet blocks written.
    pub bytes: u64,
    /// libpcap's `ps_recv`, `ps_drop`, `ps_ifdrop`, counted from the moment
    /// the filter was installed.
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
    pub duration: Duration,
    /// Why it stopped.
    pub stopped_by: StopReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Signal,
    Duration,
    Count,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Signal => "stop requested",
            StopReason::Duration => "duration reached",
            StopReason::Count => "packet count reached",
        }
    }
}

/// An activated capture with its filter installed and its file open.
pub struct Capture {
    cfg: Config,
    handle: pcap::Capture<pcap::Active>,
    writer: PcapngWriter<BufWriter<File>>,
    partial: PathBuf,
    filter: String,
    /// libpcap's counts when the filter was installed.
    baseline: pcap::Stat,
    /// Nanoseconds per unit of a packet's `tv_usec` (1 or 1000).
    frac_to_ns: u64,
    started: Instant,
    start_ns: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn pcap_error(cfg: &Config, e: pcap::Error) -> Error {
    let detail = match e {
        pcap::Error::PcapError(s) => s,
        other => other.to_string(),
    };
    let lower = detail.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        Error::Permission {
            interface: cfg.interface.clone(),
            detail,
            binary: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "udplab".into()),
        }
    } else if lower.contains("no such device") || lower.contains("doesn't exist") {
        Error::NoSuchInterface {
            interface: cfg.interface.clone(),
            detail,
        }
    } else {
        Error::Pcap {
            interface: cfg.interface.clone(),
            detail,
        }
    }
}

/// True when `interface` is a loopback interface (IFF_LOOPBACK), as the
/// kernel states it to a socket made on the calling thread: in the
/// network namespace the capture opens in. (`/sys/class/net` shows the
/// namespace sysfs was mounted in, not the thread's: a thread that
/// entered another namespace would not find its interfaces there.)
fn is_loopback(interface: &str) -> bool {
    let name = interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return false;
    }
    // SAFETY: a plain datagram socket, closed below; ifreq is zeroed and
    // holds a NUL-terminated name shorter than IFNAMSIZ.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
            *dst = src as c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        libc::close(fd);
        rc == 0 && i32::from(req.ifr_ifru.ifru_flags) & libc::IFF_LOOPBACK != 0
    }
}

impl Capture {
    /// Activates the interface, installs the filter and creates the file.
    pub fn open(cfg: Config) -> Result<Capture, Error> {
        let loopback = is_loopback(&cfg.interface);
        let default = cfg
            .filter
            .is_none()
            .then(|| DefaultFilter::new(cfg.control_port));
        // With the default filter, the filter itself cuts data to the snap
        // length and the handle keeps control packets whole.
        let snapshot = if default.is_some() {
            cfg.snaplen.max(WHOLE)
        } else {
            cfg.snaplen
        };
        let buffer = i32::try_from(cfg.buffer).unwrap_or(i32::MAX);
        let inactive = pcap::Capture::from_device(cfg.interface.as_str())
            .map_err(|e| pcap_error(&cfg, e))?
            .promisc(false)
            .snaplen(i32::try_from(snapshot).unwrap_or(i32::MAX))
            .buffer_size(buffer)
            .timeout(BLOCK_TIMEOUT_MS)
            .immediate_mode(false)
            .precision(pcap::Precision::Nano);
        let handle = inactive.open().map_err(|e| pcap_error(&cfg, e))?;
        let link_type = handle.get_datalink().0;
        // The second's fraction comes in nanoseconds when libpcap could
        // grant them (asked for above), else in microseconds.
        // SAFETY: a live pcap_t.
        let nano = unsafe { pcap_get_tstamp_precision(handle.as_ptr().cast()) } == 1;
        let frac_to_ns = if nano { 1 } else { 1_000 };

        let (user, kernel, filter) = programs(&handle, &cfg, default.as_ref(), loopback)?;
        let p = handle.as_ptr().cast::<c_void>();
        set_filter(p, user).map_err(|detail| Error::Filter {
            filter: filter.clone(),
            detail,
        })?;
        if let Some(k) = kernel
            && let Err(e) = attach_kernel_filter(handle.as_raw_fd(), &k)
        {
            warn!(
                "could not give the kernel the loopback filter ({e}): each packet on {} \
                 passes the ring twice and counts twice in libpcap's received count",
                cfg.interface
            );
        }
        let mut handle = handle.setnonblock().map_err(|e| pcap_error(&cfg, e))?;
        // Count from here: until the filter was in, libpcap counted every
        // packet on the interface.
        let baseline = handle.stats().map_err(|e| pcap_error(&cfg, e))?;

        let partial = partial_name(&cfg.output);
        let io_err = |error| Error::Io {
            path: partial.clone(),
            error,
        };
        let file = File::create(&partial).map_err(io_err)?;
        let iface = Interface {
            name: cfg.interface.clone(),
            link_type,
            snaplen: snapshot,
            filter: Some(filter.clone()),
            description: None,
        };
        let writer = PcapngWriter::new(
            BufWriter::with_capacity(WRITE_BUFFER, file),
            &iface,
            concat!("udplab ", env!("CARGO_PKG_VERSION")),
        )
        .map_err(io_err)?;
        debug!("capturing on {} with filter {filter}", cfg.interface);
        Ok(Capture {
            cfg,
            handle,
            writer,
            partial,
            filter,
            baseline,
            frac_to_ns,
            started: Instant::now(),
            start_ns: now_ns(),
        })
    }

    pub fn interface(&self) -> &str {
        &self.cfg.interface
    }

    /// Where the finished capture will be.
    pub fn path(&self) -> &Path {
        &self.cfg.output
    }

    /// Reads until `stop`, the duration or the count, then finishes the
    /// file. `progress` is called about once a second with the packets
    /// written so far.
    pub fn run(mut self, stop: &Shutdown, progress: &mut dyn FnMut(u64)) -> Result<Summary, Error> {
        let fd = self.handle.as_raw_fd();
        let mut stopping: Option<(Instant, StopReason)> = None;
        let mut last_progress = Instant::now();
        loop {
            let written = self.writer.packets();
            let remaining = self.cfg.count.map(|c| c.saturating_sub(written));
            if remaining == Some(0) {
                stopping = Some((Instant::now(), StopReason::Count));
                break;
            }
            let n = self.read_some(remaining)?;
            if stopping.is_none() {
                if stop.is_triggered() {
                    stopping = Some((Instant::now(), StopReason::Signal));
                } else if self
                    .cfg
                    .duration
                    .is_some_and(|d| self.started.elapsed() >= d)
                {
                    stopping = Some((Instant::now(), StopReason::Duration));
                }
            }
            if let Some((since, _)) = stopping
                && since.elapsed() >= DRAIN
            {
                self.close_and_drain(fd, remaining)?;
                break;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                progress(self.writer.packets());
                last_progress = Instant::now();
            }
            if n == 0 {
                let wait = if stopping.is_some() {
                    10
                } else {
                    BLOCK_TIMEOUT_MS
                };
                wait_readable(fd, wait);
            }
        }
        let stopped_by = stopping.map_or(StopReason::Signal, |(_, r)| r);
        self.finish(stopped_by)
    }

    /// Has the kernel take no more packets, then reads what it still holds,
    /// so that libpcap's counts and the file agree: every packet counted
    /// was written or dropped.
    fn close_and_drain(&mut self, fd: c_int, limit: Option<u64>) -> Result<(), Error> {
        let reject_all = [Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        if let Err(e) = attach_kernel_filter(fd, &reject_all) {
            debug!("could not close the capture filter: {e}");
        }
        let since = Instant::now();
        let last_block = Duration::from_millis(BLOCK_TIMEOUT_MS as u64 + 30);
        loop {
            let limit = limit.map(|l| l.saturating_sub(self.writer.packets()));
            if limit == Some(0) {
                return Ok(());
            }
            let n = self.read_some(limit)?;
            if since.elapsed() >= last_block {
                return Ok(());
            }
            if n == 0 {
                wait_readable(fd, 10);
            }
        }
    }

    /// One pass over what the ring holds; returns the packets written.
    fn read_some(&mut self, limit: Option<u64>) -> Result<usize, Error> {
        let mut failed: Option<io::Error> = None;
        let frac_to_ns = self.frac_to_ns;
        let writer = &mut self.writer;
        let limit = limit.map(|l| {
            usize::try_from(l)
                .unwrap_or(usize::MAX)
                .min(i32::MAX as usize)
        });
        let n = self
            .handle
            .dispatch(limit, |p| {
                if failed.is_some() {
                    return;
                }
                let ts = u64::try_from(p.header.ts.tv_sec)
                    .unwrap_or(0)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(
                        u64::try_from(p.header.ts.tv_usec)
                            .unwrap_or(0)
                            .saturating_mul(frac_to_ns),
                    );
                if let Err(e) = writer.write_packet(ts, p.data, p.header.len) {
                    failed = Some(e);
                }
            })
            .map_err(|e| match pcap_error(&self.cfg, e) {
                Error::Pcap { interface, detail } => Error::Pcap {
                    interface,
                    detail: format!(
                        "{detail}; the packets read so far are in {}",
                        self.partial.display()
                    ),
                },
                other => other,
            })?;
        if let Some(error) = failed {
            return Err(Error::Io {
                path: self.partial.clone(),
                error,
            });
        }
        Ok(n)
    }

    fn finish(mut self, stopped_by: StopReason) -> Result<Summary, Error> {
        let now = self.handle.stats().map_err(|e| pcap_error(&self.cfg, e))?;
        let since = |a: u32, b: u32| u64::from(a.wrapping_sub(b));
        let (received, dropped, if_dropped) = (
            since(now.received, self.baseline.received),
            since(now.dropped, self.baseline.dropped),
            since(now.if_dropped, self.baseline.if_dropped),
        );
        let end_ns = now_ns();
        let stats = Stats {
            start_ns: self.start_ns,
            end_ns,
            received,
            dropped,
            if_dropped,
            delivered: self.writer.packets(),
        };
        let comment = format!(
            "libpcap, since the filter was installed: {received} received, {dropped} dropped \
             (buffer full), {if_dropped} dropped by the interface; filter: {}",
            self.filter
        );
        let (packets, bytes) = (self.writer.packets(), self.writer.bytes());
        let partial = self.partial.clone();
        let io_err = |error| Error::Io {
            path: partial.clone(),
            error,
        };
        let out = self.writer.finish(&stats, Some(&comment)).map_err(io_err)?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        std::fs::rename(&partial, &self.cfg.output).map_err(|error| Error::Io {
            path: self.cfg.output.clone(),
            error,
        })?;
        if dropped > 0 {
            warn!("the capture dropped {dropped} packets: raise --buffer, or lower --snaplen");
        }
        Ok(Summary {
            path: self.cfg.output,
            interface: self.cfg.interface,
            filter: self.filter,
            packets,
            bytes,
            received,
            dropped,
            if_dropped,
            duration: self.started.elapsed(),
            stopped_by,
        })
    }
}

fn wait_readable(fd: c_int, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a failure or EINTR only ends the wait early.
    unsafe {
        libc::poll(&mut p, 1, ms);
    }
}

// libpcap's filter calls, for a program assembled here (the pcap crate
// installs only programs it compiled from text). The pcap crate links
// libpcap.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut Insn,
}

const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;

unsafe extern "C" {
    fn pcap_compile(
        p: *mut c_void,
        fp: *mut BpfProgram,
        text: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_setfilter(p: *mut c_void, fp: *mut BpfProgram) -> c_int;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_geterr(p: *mut c_void) -> *const c_char;
    fn pcap_get_tstamp_precision(p: *mut c_void) -> c_int;
    fn pcap_offline_filter(fp: *const BpfProgram, h: *const PcapPkthdr, pkt: *const u8) -> c_int;
}

#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

fn last_error(p: *mut c_void) -> String {
    // SAFETY: pcap_geterr returns a NUL-terminated string owned by the
    // handle, valid until the next libpcap call on it.
    unsafe {
        CStr::from_ptr(pcap_geterr(p))
            .to_string_lossy()
            .into_owned()
    }
}

/// Compiles `text` on the handle `p` (for its link type and snap length).
fn compile(p: *mut c_void, text: &str) -> Result<Vec<Insn>, Error> {
    let filter_err = |detail: String| Error::Filter {
        filter: text.to_owned(),
        detail,
    };
    let c = CString::new(text).map_err(|_| filter_err("contains a NUL byte".into()))?;
    let mut prog = BpfProgram {
        bf_len: 0,
        bf_insns: std::ptr::null_mut(),
    };
    // SAFETY: p is a live pcap_t; prog is written by pcap_compile and freed
    // below after its instructions are copied out.
    unsafe {
        if pcap_compile(p, &mut prog, c.as_ptr(), 1, PCAP_NETMASK_UNKNOWN) != 0 {
            return Err(filter_err(last_error(p)));
        }
        let insns = if prog.bf_insns.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec()
        };
        pcap_freecode(&mut prog);
        Ok(insns)
    }
}

/// libpcap's program, the kernel's own (on loopback), the expression.
type Programs = (Vec<Insn>, Option<Vec<Insn>>, String);

/// The filter programs of a capture, and the expression the file records:
/// the one libpcap holds (and runs in user space over the blocks already in
/// its ring when it is installed), and on loopback the kernel's own, which
/// keeps only the incoming copy of each packet (see filter.rs).
fn programs(
    handle: &pcap::Capture<pcap::Active>,
    cfg: &Config,
    default: Option<&DefaultFilter>,
    loopback: bool,
) -> Result<Programs, Error> {
    let p = handle.as_ptr().cast::<c_void>();
    let split = |control: &str, data: &str| split_program(p, control, data, cfg.snaplen);
    match (default, &cfg.filter) {
        (Some(d), _) => {
            let user = split(&d.control, &d.data)?;
            let kernel = if loopback {
                Some(split(&inbound(&d.control), &inbound(&d.data))?)
            } else {
                None
            };
            let expr = d.expression();
            Ok((user, kernel, if loopback { inbound(&expr) } else { expr }))
        }
        (None, Some(own)) => {
            let user = compile(p, own)?;
            let kernel = if loopback {
                Some(compile(p, &inbound(own))?)
            } else {
                None
            };
            Ok((
                user,
                kernel,
                if loopback { inbound(own) } else { own.clone() },
            ))
        }
        (None, None) => Ok((compile(p, "")?, None, String::new())),
    }
}

/// `control` kept whole, then `data` cut to `snaplen`, as one program
/// compiled on the handle `p` (see filter.rs).
fn split_program(
    p: *mut c_void,
    control: &str,
    data: &str,
    snaplen: u32,
) -> Result<Vec<Insn>, Error> {
    splice(&compile(p, control)?, &compile(p, data)?, snaplen).map_err(|e| Error::Filter {
        filter: format!("({control}) or ({data})"),
        detail: e.to_string(),
    })
}

/// Installs `insns` as libpcap's filter.
fn set_filter(p: *mut c_void, mut insns: Vec<Insn>) -> Result<(), String> {
    let mut prog = BpfProgram {
        bf_len: insns.len() as c_uint,
        bf_insns: insns.as_mut_ptr(),
    };
    // SAFETY: prog points at `insns`, alive for the call; libpcap copies
    // the program it installs.
    if unsafe { pcap_setfilter(p, &mut prog) } != 0 {
        return Err(last_error(p));
    }
    Ok(())
}

/// Replaces the kernel's filter on libpcap's packet socket (a link type
/// libpcap does not rewrite programs for: not a cooked one).
fn attach_kernel_filter(fd: c_int, insns: &[Insn]) -> io::Result<()> {
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: Insn has sock_filter's layout; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast::<c_void>(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The snap length the default filter gives `frame` on a link of
/// `link_type`: what the kernel will keep of it, 0 when it is not taken.
/// Runs the spliced program in libpcap's own interpreter.
pub fn default_filter_verdict(
    link_type: i32,
    control_port: u16,
    snaplen: u32,
    frame: &[u8],
) -> Result<u32, Error> {
    let dead = pcap::Capture::dead(pcap::Linktype(link_type)).map_err(|e| Error::Pcap {
        interface: "(none)".into(),
        detail: e.to_string(),
    })?;
    let p = dead.as_ptr().cast::<c_void>();
    let f = DefaultFilter::new(control_port);
    let mut insns = split_program(p, &f.control, &f.data, snaplen)?;
    let prog = BpfProgram {
        bf_len: insns.len() as c_uint,
        bf_insns: insns.as_mut_ptr(),
    };
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let hdr = PcapPkthdr {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: len,
        len,
    };
    // SAFETY: prog and frame outlive the call; hdr states frame's length.
    let k = unsafe { pcap_offline_filter(&prog, &hdr, frame.as_ptr()) };
    Ok(u32::try_from(k).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4 frame: TCP or UDP from `sport` to `dport`.
    fn frame(proto: u8, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let l4 = if proto == 6 { 20 } else { 8 };
        let total = 20 + l4 + payload;
        let mut f = vec![0u8; 14 + total];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&[127, 0, 0, 1]);
        f[30..34].copy_from_slice(&[127, 0, 0, 1]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        if proto == 6 {
            f[46] = 0x50;
        } else {
            f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        }
        f
    }

    #[test]
    fn libpcap_keeps_control_whole_and_cuts_data_to_the_snap_length() {
        let v = |f: &[u8]| default_filter_verdict(1, 5005, 128, f).unwrap();
        // The control connection, both ways: whole.
        assert_eq!(v(&frame(6, 40000, 5005, 200)), 65_535);
        assert_eq!(v(&frame(6, 5005, 40000, 200)), 65_535);
        // Data from client 3's port: cut to 128.
        assert_eq!(v(&frame(17, 5008, 40000, 1024)), 128);
        // The last data port the filter takes, and the first it does not.
        assert_eq!(v(&frame(17, 9101, 40000, 1024)), 128);
        assert_eq!(v(&frame(17, 9102, 40000, 1024)), 0);
        // UDP to a data port, TCP elsewhere: not taken.
        assert_eq!(v(&frame(17, 40000, 5008, 1024)), 0);
        assert_eq!(v(&frame(6, 40000, 22, 0)), 0);
    }

    #[test]
    fn a_bad_filter_is_a_filter_error() {
        let dead = pcap::Capture::dead(pcap::Linktype(1)).unwrap();
        let e = compile(dead.as_ptr().cast(), "udp port nonsense").unwrap_err();
        assert!(matches!(e, Error::Filter { .. }), "{e}");
        assert!(e.to_string().contains("udp port nonsense"), "{e}");
    }

    #[test]
    fn lo_is_loopback_and_other_names_are_not() {
        assert!(is_loopback("lo"));
        assert!(!is_loopback("udplab-no-such-if"));
        assert!(!is_loopback("a-name-far-too-long-for-linux"));
    }

    #[test]
    fn the_partial_name_keeps_the_directory() {
        assert_eq!(
            partial_name(Path::new("runs/a/run.pcapng")),
            PathBuf::from("runs/a/run.pcapng.part")
        );
    }
}
