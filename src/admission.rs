//! What the server lets in while clients register, so that no peer can
//! starve the others: client numbers handed out and taken back, slots for
//! registrations under way shared out by address, and a pause in accepting
//! when the process runs out of file descriptors. No I/O here but the
//! clock; the server's registrar does the sockets.
//!
//! See `docs/PROTOCOL.md`, "Limits a server enforces".

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Client numbers in use: each names a data port, control port + k, for
/// as long as its client registers, waits at the barrier or is served.
/// A number whose registration failed, or whose round ended, comes back,
/// and the lowest free one goes out first, so a long-running server keeps
/// its numbers (and data ports) low instead of running past port 65535.
#[derive(Debug)]
pub struct Numbers {
    /// Numbers below `next` that came back.
    free: BTreeSet<u16>,
    /// Numbers kept out until a time: their data port was taken by another
    /// socket, and handing them out again at once (lowest first) would fail
    /// every client after.
    aside: Vec<(u16, Instant)>,
    /// The lowest number never handed out (or handed back from the top).
    next: u32,
    /// The highest number whose data port exists: 65535 - control port.
    max: u16,
}

impl Numbers {
    pub fn new(control_port: u16) -> Numbers {
        Numbers {
            free: BTreeSet::new(),
            aside: Vec::new(),
            next: 1,
            max: u16::MAX - control_port,
        }
    }

    /// How many numbers there are in all.
    pub fn capacity(&self) -> u16 {
        self.max
    }

    /// Whether [`Numbers::take`] would give one.
    pub fn available(&self) -> bool {
        !self.free.is_empty() || self.next <= u32::from(self.max)
    }

    /// The lowest free number, if any is free.
    pub fn take(&mut self) -> Option<u16> {
        if let Some(k) = self.free.pop_first() {
            return Some(k);
        }
        let k = u16::try_from(self.next).ok().filter(|&k| k <= self.max)?;
        self.next += 1;
        Some(k)
    }

    /// `k` is free again. A number that is not out is left alone.
    pub fn give_back(&mut self, k: u16) {
        if k == 0 || u32::from(k) >= self.next || self.free.contains(&k) {
            debug_assert!(false, "client number {k} given back but not out");
            return;
        }
        self.free.insert(k);
        // Keep the numbers compact: free ones at the top lower `next`.
        while self.next > 1 && self.free.remove(&((self.next - 1) as u16)) {
            self.next -= 1;
        }
    }

    /// Keep `k`, which is out, from going out again until `until`.
    pub fn set_aside(&mut self, k: u16, until: Instant) {
        self.aside.push((k, until));
    }

    /// Free the numbers set aside whose time has come.
    pub fn release_aside(&mut self, now: Instant) {
        if self.aside.iter().all(|&(_, until)| until > now) {
            return;
        }
        let (due, kept): (Vec<_>, Vec<_>) = self.aside.drain(..).partition(|&(_, u)| u <= now);
        self.aside = kept;
        for (k, _) in due {
            self.give_back(k);
        }
    }

    /// How many numbers are out (those set aside included).
    pub fn in_use(&self) -> usize {
        (self.next as usize - 1) - self.free.len()
    }
}

/// Registrations under way at once, in all: each has a thread and a
/// connection.
pub const MAX_REGISTERING: usize = 256;

/// Of [`MAX_REGISTERING`], the slots kept for addresses that hold none:
/// peers that fill the rest still leave room for someone new.
pub const RESERVED_FOR_NEW: usize = 64;

/// The most `--per-address` may be: the slots not kept for new addresses.
pub const MAX_PER_ADDRESS: usize = MAX_REGISTERING - RESERVED_FOR_NEW;

/// Default of `--per-address`: registrations one address may have under
/// way at once. An honest client has one; a round of many clients behind
/// one address registers in a few milliseconds each, and what comes past
/// the bound waits its turn instead of being refused.
pub const DEFAULT_PER_ADDRESS: usize = 64;

/// Connections accepted that wait for a slot (their address is at its
/// bound, or all slots are taken) without a number yet; more are refused.
pub const MAX_WAITING: usize = 512;

/// Whether a connection from some address may start registering now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Its address has its bound of registrations under way.
    AddressFull,
    /// No slot is left for it (those kept for new addresses included, when
    /// its address holds one already).
    Full,
}

/// Slots for registrations under way, counted per address.
#[derive(Debug)]
pub struct Slots {
    per_address: usize,
    total: usize,
    held: HashMap<IpAddr, usize>,
}

impl Slots {
    /// `per_address`: at least 1, at most what the shared slots hold.
    pub fn new(per_address: usize) -> Slots {
        Slots {
            per_address: per_address.clamp(1, MAX_PER_ADDRESS),
            total: 0,
            held: HashMap::new(),
        }
    }

    /// Registrations under way.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn admit(&self, ip: IpAddr) -> Admit {
        let held = self.held.get(&address_key(ip)).copied().unwrap_or(0);
        if held >= self.per_address {
            Admit::AddressFull
        } else if self.total >= MAX_REGISTERING
            || (held > 0 && self.total >= MAX_REGISTERING - RESERVED_FOR_NEW)
        {
            Admit::Full
        } else {
            Admit::Yes
        }
    }

    /// A registration from `ip` starts (after [`Slots::admit`] said yes).
    pub fn take(&mut self, ip: IpAddr) {
        *self.held.entry(address_key(ip)).or_insert(0) += 1;
        self.total += 1;
    }

    /// A registration from `ip` ended, whichever way.
    pub fn give_back(&mut self, ip: IpAddr) {
        let key = address_key(ip);
        if let Some(held) = self.held.get_mut(&key) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&key);
            }
            self.total -= 1;
        }
    }
}

/// The address a peer's slots are counted under: its IPv4 address, or the
/// /64 of its IPv6 address (one host picks freely within its /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// At most one warning a second about one kind of event, saying how many
/// there were since the last: a flood of them costs the log a line a
/// second.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    pub fn per_second() -> Throttle {
        Throttle {
            every: Duration::from_secs(1),
            last: None,
            count: 0,
        }
    }

    /// One more event at `now`: `Some(events since the last warning, this
    /// one included)` when it is time to warn, `None` to stay quiet.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        self.add(now, 1)
    }

    /// `n` more events at `now` (none: nothing to say), as [`Throttle::event`].
    pub fn add(&mut self, now: Instant, n: u64) -> Option<u64> {
        if n == 0 {
            return None;
        }
        self.count += n;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// How long a client number whose data port another socket holds is kept
/// out: that socket may stay for good.
pub const PORT_TAKEN_ASIDE: Duration = Duration::from_secs(60);

/// How long accepting pauses after it failed for want of file descriptors
/// (or kernel memory): the connection stays queued in the kernel, the
/// listener stays readable, and trying again at once would only spin.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Whether an accept failed because the process or the system is out of
/// something a new connection needs, which only time (other connections
/// ending) gives back.
pub fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_out_lowest_first_and_come_back() {
        let mut n = Numbers::new(5005);
        assert_eq!((n.take(), n.take(), n.take()), (Some(1), Some(2), Some(3)));
        n.give_back(2);
        assert_eq!(n.in_use(), 2);
        assert_eq!(n.take(), Some(2));
        n.give_back(3);
        n.give_back(2);
        n.give_back(1);
        assert_eq!(n.in_use(), 0);
        assert_eq!(n.take(), Some(1));
    }

    #[test]
    fn numbers_end_at_the_last_data_port() {
        let mut n = Numbers::new(65533);
        assert_eq!(n.capacity(), 2);
        assert_eq!((n.take(), n.take()), (Some(1), Some(2)));
        assert!(!n.available());
        assert_eq!(n.take(), None);
        n.give_back(1);
        assert_eq!(n.take(), Some(1));
        assert_eq!(Numbers::new(u16::MAX).take(), None);
    }

    #[test]
    fn a_number_set_aside_stays_out_until_its_time() {
        let t0 = Instant::now();
        let mut n = Numbers::new(5005);
        let k = n.take().unwrap();
        n.set_aside(k, t0 + Duration::from_secs(60));
        assert_eq!(n.take(), Some(2));
        n.release_aside(t0 + Duration::from_secs(59));
        assert_eq!(n.take(), Some(3));
        n.release_aside(t0 + Duration::from_secs(60));
        assert_eq!(n.take(), Some(1));
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let a = IpAddr::from([10, 0, 0, 1]);
        let mut s = Slots::new(DEFAULT_PER_ADDRESS);
        while s.admit(a) == Admit::Yes {
            s.take(a);
        }
        assert_eq!(s.admit(a), Admit::AddressFull);
        assert_eq!(s.total(), DEFAULT_PER_ADDRESS);
        assert_eq!(s.admit(IpAddr::from([10, 0, 0, 2])), Admit::Yes);
    }

    #[test]
    fn slots_kept_for_new_addresses_survive_many_holders() {
        let mut s = Slots::new(10);
        // Addresses that already hold a slot fill the shared ones...
        let mut host = 0u8;
        while s.total() < MAX_REGISTERING - RESERVED_FOR_NEW {
            host += 1;
            let ip = IpAddr::from([10, 0, 1, host]);
            while s.admit(ip) == Admit::Yes && s.total() < MAX_REGISTERING - RESERVED_FOR_NEW {
                s.take(ip);
            }
        }
        let holder = IpAddr::from([10, 0, 1, 1]);
        assert_eq!(s.admit(holder), Admit::AddressFull);
        let last = IpAddr::from([10, 0, 1, host]);
        assert_eq!(s.admit(last), Admit::Full);
        // ... and a new address still gets one of the kept ones, once.
        let new = IpAddr::from([10, 0, 2, 1]);
        assert_eq!(s.admit(new), Admit::Yes);
        s.take(new);
        assert_eq!(s.admit(new), Admit::Full);
        s.give_back(new);
        assert_eq!(s.admit(new), Admit::Yes);
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn the_throttle_warns_once_a_second_with_a_count() {
        let t0 = Instant::now();
        let mut t = Throttle::per_second();
        assert_eq!(t.event(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(t.event(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(t.event(t0 + Duration::from_secs(1)), Some(1000));
    }
}
