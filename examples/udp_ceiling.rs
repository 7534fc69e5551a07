//! This machine's own ceiling for 1024-byte UDP datagrams on loopback: a
//! bare sendmmsg/recvmmsg pair, 64 datagrams per call, the receiver on a
//! thread of its own with a 64 MiB receive buffer (SO_RCVBUFFORCE when
//! allowed, else SO_RCVBUF). No protocol, no pacing, no file: what
//! scripts/bench-link's loopback section sets udplab's goodput against.
//!
//!     cargo run --release --example udp_ceiling -- [SECONDS] [PAYLOAD]
//!
//! Prints one JSON line: datagrams sent, received, the received ones per
//! second (over the receiver's time from its first datagram to its last),
//! loss in percent and the receive buffer the kernel granted.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn set_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) -> io::Result<libc::c_int> {
    let fd = sock.as_raw_fd();
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    let p = (&bytes as *const libc::c_int).cast();
    // SAFETY: fd is a live socket, p points at a c_int of len bytes.
    let forced = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) };
    if forced != 0 {
        // SAFETY: as above.
        if unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut got: libc::c_int = 0;
    let mut glen = len;
    // SAFETY: got and glen are valid for writing.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut glen,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got)
}

/// `BATCH` buffers of `size` bytes with their iovecs and mmsghdrs.
struct Batch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(size: usize) -> Batch {
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0x5a; size]).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let msgs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is a valid empty header.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Batch { bufs, iovs, msgs }
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(Ok(3.0), |s| s.parse()).expect("SECONDS");
    let size: usize = args
        .next()
        .map_or(Ok(1024), |s| s.parse())
        .expect("PAYLOAD");

    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let granted = set_rcvbuf(&rx, 64 << 20)?;
    rx.set_read_timeout(Some(Duration::from_millis(200)))?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;

    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let receiver = std::thread::spawn(move || -> io::Result<(u64, Option<Duration>)> {
        let mut b = Batch::new(size);
        let (mut got, mut first, mut last) = (0u64, None, None);
        loop {
            // SAFETY: msgs point at BATCH live iovecs and buffers of b.
            let n = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    b.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            got += n as u64;
        }
        let _ = (&b.bufs, &b.iovs);
        Ok((got, first.zip(last).map(|(f, l)| l - f)))
    });

    let mut b = Batch::new(size);
    let mut sent = 0u64;
    let started = Instant::now();
    let until = Duration::from_secs_f64(secs);
    while started.elapsed() < until {
        // SAFETY: msgs point at BATCH live iovecs and buffers of b.
        let n = unsafe {
            libc::sendmmsg(
                tx.as_raw_fd(),
                b.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) || e.raw_os_error() == Some(libc::ENOBUFS)
            {
                continue;
            }
            return Err(e);
        }
        sent += n as u64;
    }
    let send_s = started.elapsed().as_secs_f64();
    let _ = (&b.bufs, &b.iovs);
    done.store(true, Ordering::Relaxed);
    let (got, span) = receiver.join().expect("the receiving thread panicked")?;
    let span = span.map_or(send_s, |d| d.as_secs_f64().max(1e-9));
    println!(
        "{{\"payload\": {size}, \"batch\": {BATCH}, \"recv_buffer\": {granted}, \"sent\": {sent}, \
         \"send_s\": {send_s:.6}, \"received\": {got}, \"recv_s\": {span:.6}, \
         \"received_per_s\": {:.0}, \"loss_pct\": {:.4}}}",
        got as f64 / span,
        if sent == 0 {
            0.0
        } else {
            100.0 * (sent - got.min(sent)) as f64 / sent as f64
        }
    );
    Ok(())
}
