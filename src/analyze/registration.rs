//! The control connection's bytes, decoded: the lab's registration (client
//! number, UDP port, protocol version, concurrency) and, for v1, the framed
//! messages in both directions (announce, start, done, report, feedback,
//! abort).

use super::tcp::{Connection, Side};
use crate::protocol::{Protocol, lab, v1};

/// The control bytes of a connection, decoded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub client_id: Option<u16>,
    pub concurrency: Option<u16>,
    pub port: Option<lab::PortMessage>,
    pub announce: Option<v1::Announce>,
    pub done: Option<v1::Done>,
    pub report: Option<v1::Report>,
    pub messages: Vec<String>,
    pub note: Option<String>,
}

impl Registration {
    pub fn version(&self) -> Option<u8> {
        self.port.map(|p| p.version)
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match self.version()? {
            0 => Some(Protocol::Lab),
            v1::VERSION => Some(Protocol::V1),
            _ => None,
        }
    }
}

/// Decode the control bytes of both directions: the lab's registration,
/// then for v1 the framed messages.
pub fn decode_registration(c: &Connection) -> Registration {
    let mut r = Registration::default();
    let mut notes = Vec::new();
    let down = &c.to_client.bytes;
    let up = &c.to_server.bytes;
    r.client_id = down
        .get(..lab::CLIENT_ID_LEN)
        .and_then(|b| lab::parse_client_id(b).ok());
    r.port = up
        .get(..lab::PORT_MSG_LEN)
        .and_then(|b| lab::PortMessage::parse(b).ok());
    let after_id = lab::CLIENT_ID_LEN + lab::CONCURRENCY_LEN;
    r.concurrency = down
        .get(lab::CLIENT_ID_LEN..after_id)
        .and_then(|b| lab::parse_concurrency(b).ok());
    if r.version() == Some(v1::VERSION) {
        for (dir, bytes, from, cut) in [
            ("server", down, after_id, c.to_client.hole.is_some()),
            ("client", up, lab::PORT_MSG_LEN, c.to_server.hole.is_some()),
        ] {
            let mut rest = bytes.get(from..).unwrap_or_default();
            // The reliable mode's feedback comes every few milliseconds: a
            // run of them is listed once, with its count and last figures.
            let mut feedback: Option<(u64, v1::Feedback)> = None;
            loop {
                let decoded = v1::Message::decode(rest);
                if !matches!(decoded, Ok(Some((v1::Message::Feedback(_), _))))
                    && let Some((n, last)) = feedback.take()
                {
                    r.messages.push(feedback_line(dir, n, &last));
                }
                match decoded {
                    Ok(Some((v1::Message::Feedback(f), used))) => {
                        let n = feedback.map_or(0, |(n, _)| n);
                        feedback = Some((n + 1, f));
                        rest = rest.get(used..).unwrap_or_default();
                    }
                    Ok(Some((msg, used))) => {
                        r.messages.push(format!("{dir}: {}", describe(&msg)));
                        match msg {
                            v1::Message::Announce(a) => r.announce = Some(a),
                            v1::Message::Done(d) => r.done = Some(d),
                            v1::Message::Report(rep) => r.report = Some(rep),
                            _ => {}
                        }
                        rest = rest.get(used..).unwrap_or_default();
                    }
                    Ok(None) => {
                        // A stream cut short says so below, once.
                        if !rest.is_empty() && !cut {
                            notes.push(format!(
                                "{} bytes from the {dir} end with an unfinished message",
                                rest.len()
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        notes.push(format!("undecodable message from the {dir}: {e}"));
                        break;
                    }
                }
            }
        }
    } else if let Some(v) = r.version()
        && v != 0
    {
        notes.push(format!("unknown protocol version {v} in the port message"));
    }
    for (dir, s) in [("client", &c.to_server), ("server", &c.to_client)] {
        if let Some(h) = s.hole {
            notes.push(format!("bytes from the {dir}: {}", h.describe()));
        }
    }
    if !notes.is_empty() {
        r.note = Some(notes.join("; "));
    }
    r
}

/// A run of `n` feedback messages from `dir`, the last one `last`.
fn feedback_line(dir: &str, n: u64, last: &v1::Feedback) -> String {
    if n == 1 {
        format!("{dir}: {}", describe(&v1::Message::Feedback(*last)))
    } else {
        format!(
            "{dir}: {n} x feedback (the last: round {}, {} arrived, {} lost)",
            last.round, last.arrived, last.lost
        )
    }
}

fn describe(m: &v1::Message) -> String {
    match m {
        v1::Message::Announce(a) => format!(
            "announce {} ({} bytes, {} datagrams of {})",
            a.file_name, a.file_size, a.datagrams, a.datagram_size
        ),
        v1::Message::Start { .. } => "start".into(),
        v1::Message::Done(d) => format!(
            "done ({} datagrams, {} bytes sent)",
            d.datagrams_sent, d.bytes_sent
        ),
        v1::Message::Report(r) => format!(
            "report ({} datagrams, {} bytes received, {} missing{})",
            r.datagrams_received,
            r.bytes_received,
            r.missing_datagrams,
            r.kernel_drops
                .map(|k| format!(", {k} kernel drops"))
                .unwrap_or_default()
        ),
        v1::Message::Abort { reason } => format!("abort: {reason}"),
        v1::Message::Feedback(f) => format!(
            "feedback (round {}, {} arrived, {} lost)",
            f.round, f.arrived, f.lost
        ),
    }
}

/// A control message and where it starts in its direction's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub from: Side,
    pub offset: u64,
    pub what: Carried,
    pub label: String,
}

/// What kind of control message a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The lab's registration bytes: client id, concurrency, port.
    Registration,
    Announce,
    Start,
    Done,
    Report,
    Abort,
    Feedback,
}

impl Carried {
    fn of(m: &v1::Message) -> Carried {
        match m {
            v1::Message::Announce(_) => Carried::Announce,
            v1::Message::Start { .. } => Carried::Start,
            v1::Message::Done(_) => Carried::Done,
            v1::Message::Report(_) => Carried::Report,
            v1::Message::Abort { .. } => Carried::Abort,
            v1::Message::Feedback(_) => Carried::Feedback,
        }
    }
}

/// Where v1's framed messages start in each direction: after the lab's
/// registration bytes.
pub fn framed_from(side: Side) -> u64 {
    match side {
        Side::Server => (lab::CLIENT_ID_LEN + lab::CONCURRENCY_LEN) as u64,
        Side::Client => lab::PORT_MSG_LEN as u64,
    }
}

/// Every control message of a connection with its stream offset, in
/// stream order per direction, as far as the captured bytes hold them:
/// what the ladder diagram labels its segments with.
pub fn message_spans(c: &Connection) -> Vec<Span> {
    let r = decode_registration(c);
    let mut out = Vec::new();
    let mut push = |from: Side, offset: u64, what: Carried, label: String| {
        out.push(Span {
            from,
            offset,
            what,
            label,
        })
    };
    if let Some(p) = r.port {
        let speaks = match r.protocol() {
            Some(proto) => proto.as_str().to_string(),
            None => format!("version {}", p.version),
        };
        push(
            Side::Client,
            0,
            Carried::Registration,
            format!("port {} ({speaks})", p.port),
        );
    }
    if let Some(id) = r.client_id {
        push(
            Side::Server,
            0,
            Carried::Registration,
            format!("client id {id}"),
        );
    }
    if let Some(n) = r.concurrency {
        push(
            Side::Server,
            lab::CLIENT_ID_LEN as u64,
            Carried::Registration,
            format!("concurrency {n}"),
        );
    }
    if r.version() != Some(v1::VERSION) {
        return out;
    }
    for (from, bytes) in [
        (Side::Server, &c.to_client.bytes),
        (Side::Client, &c.to_server.bytes),
    ] {
        let mut at = framed_from(from) as usize;
        while let Ok(Some((msg, used))) = v1::Message::decode(bytes.get(at..).unwrap_or_default()) {
            push(from, at as u64, Carried::of(&msg), describe(&msg));
            at += used.max(1);
        }
    }
    out
}
