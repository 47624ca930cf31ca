//! The connection driver: one connection, whatever its transport, in one task: transport ↔
//! [`SecretStream`] ↔ the node's replicator. TCP streams start with the secret stream's Noise
//! XX handshake; UDX streams the swarm hands over (HyperDHT's IK ran inside PEER_HANDSHAKE)
//! start with the keys set. No queue or task stands between the socket and the replicator.
//!
//! The loop (`tokio::select!`, biased towards writing so our requests are never starved by a
//! peer streaming data at us):
//! 1. write the front of the output buffer;
//! 2. read from the transport (only while the replicator wants input), decrypt, hand every
//!    message to the replicator under one lock;
//! 3. wake on the replicator's notify (another task queued frames for us), the secret
//!    stream's timer, the node closing, or the swarm ending the connection (a duplicate, a
//!    ban; then we flush and end as when the node closes).
//!
//! After each step, `pump` moves frames replicator → secret stream → output buffer while the
//! buffer is below `HIGH_WATER`. Messages each way are counted on the swarm's
//! [`Control`](peerhost_swarm::Control) (its duplicate rule asks whether a connection carried
//! traffic both ways).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use peerhost_noise::{Event as StreamEvent, SecretStream};
use peerhost_replication::{ConnId, ConnectionInfo};
use peerhost_swarm::{CloseReason, Control};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::{ConnectionError, Counters, Node, Registration};

/// Bytes of encrypted output buffered per connection before we stop producing more.
const HIGH_WATER: usize = 1 << 20;

/// Bytes read from the transport per read call.
const READ_BUF: usize = 64 * 1024;

/// What a connection is, for the node's registry and logs.
pub(crate) struct Setup {
    /// The remote's address or name, for people.
    pub(crate) label: String,
    /// `tcp` or `dht`.
    pub(crate) transport: &'static str,
    /// The swarm's hold on a connection it handed out.
    pub(crate) control: Option<Control>,
}

struct Conn {
    node: Node,
    label: String,
    transport: &'static str,
    control: Option<Control>,
    /// Why the swarm ended the connection, if it did.
    ended_by: Option<CloseReason>,
    counters: Arc<Counters>,
    stream: SecretStream,
    id: Option<ConnId>,
    notify: Arc<Notify>,
    out: VecDeque<Vec<u8>>,
    /// Bytes of `out.front()` already written.
    written: usize,
    out_bytes: usize,
    reading: bool,
    ended: bool,
    /// The node is closing: no more frames are pulled from the replicator.
    closing: bool,
}

impl Conn {
    /// Replicator → secret stream → output buffer, while below the high-water mark. Fails when
    /// the replicator ended the connection.
    fn pump(&mut self) -> Result<(), ConnectionError> {
        let now = Instant::now();
        if let (Some(id), false) = (self.id, self.closing) {
            let (stream, out_bytes) = (&mut self.stream, self.out_bytes);
            let result = self.node.with(|r| {
                if let Some(e) = r.connection_error(id) {
                    return Err(ConnectionError::Replication {
                        message: e.to_string(),
                        code: e.code(),
                    });
                }
                let mut sent = 0;
                while out_bytes + stream.queued_bytes() < HIGH_WATER {
                    let Some(frame) = r.poll_transmit(id) else {
                        break;
                    };
                    if stream.send(now, &frame).is_err() {
                        break;
                    }
                    sent += 1;
                }
                Ok((r.wants_input(id), sent))
            });
            let (reading, sent) = result?;
            if let (Some(c), true) = (&self.control, sent > 0) {
                c.written(sent);
            }
            self.reading = reading && !self.ended;
        }
        while let Some(t) = self.stream.poll_transmit() {
            self.out_bytes += t.len();
            self.out.push_back(t);
        }
        Ok(())
    }

    /// Drain the secret stream's events: register the connection at the handshake, hand
    /// messages to the replicator.
    fn events(&mut self) -> Result<(), ConnectionError> {
        let now = Instant::now();
        let mut frames = Vec::new();
        while let Some(ev) = self.stream.poll_event() {
            match ev {
                StreamEvent::Handshake {
                    remote_public_key,
                    handshake_hash,
                } => {
                    let info = ConnectionInfo {
                        is_initiator: self.stream.is_initiator(),
                        handshake_hash,
                        remote_public_key,
                    };
                    let id = self.node.with(|r| r.add_connection(info, now));
                    self.node.register(
                        id,
                        Registration {
                            notify: self.notify.clone(),
                            counters: self.counters.clone(),
                            remote_public_key,
                            label: self.label.clone(),
                            transport: self.transport,
                            is_initiator: self.stream.is_initiator(),
                        },
                    );
                    self.id = Some(id);
                }
                StreamEvent::Message(m) => frames.push(m),
                StreamEvent::End => self.ended = true,
                _ => {}
            }
        }
        if let (Some(c), false) = (&self.control, frames.is_empty()) {
            c.read(frames.len() as u64);
        }
        if let (Some(id), false) = (self.id, frames.is_empty()) {
            // One call for all that one read decrypted: it stops at the first violation, and
            // stores and schedules once.
            self.node.with(|r| r.handle_inputs(id, &frames, now));
        }
        Ok(())
    }
}

/// Drive one connection until it ends: `secret` (a fresh secret stream for TCP, or one set
/// up from a finished handshake) over `stream`.
pub(crate) async fn run<S>(
    node: Node,
    stream: S,
    secret: SecretStream,
    setup: Setup,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let label = setup.label.clone();
    let mut c = Conn {
        node: node.clone(),
        label: setup.label,
        transport: setup.transport,
        control: setup.control,
        ended_by: None,
        counters: Arc::new(Counters::default()),
        stream: secret,
        id: None,
        notify: Arc::new(Notify::new()),
        out: VecDeque::new(),
        written: 0,
        out_bytes: 0,
        reading: true,
        ended: false,
        closing: false,
    };
    let result = drive(&mut c, stream, &label).await;
    if let Some(id) = c.id {
        node.unregister(id);
    }
    match (result, c.ended_by) {
        (Ok(()), Some(reason)) => Err(ConnectionError::Swarm(reason)),
        (r, _) => r,
    }
}

/// Resolves when the swarm ends the connection (never without a swarm).
async fn swarm_ended(control: &mut Option<Control>) -> CloseReason {
    match control {
        Some(c) => c.ended().await,
        None => std::future::pending().await,
    }
}

async fn drive<S>(c: &mut Conn, stream: S, label: &str) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_BUF];
    let notify = c.notify.clone();
    let mut closed = c.node.closed();
    let node = c.node.clone();
    let upload = node.upload();
    c.pump()?;
    loop {
        if c.ended && c.out.is_empty() {
            // The remote ended its side and everything we had is written: end ours.
            let _ = wr.shutdown().await;
            return Ok(());
        }
        if *closed.borrow() && !c.ended {
            // The node is closing: flush what is buffered, produce nothing more, then end.
            c.ended = true;
            c.closing = true;
            c.reading = false;
            continue;
        }
        let timer = c.stream.poll_timeout();
        // The upload limit: wait until the bucket is out of debt before writing.
        let gate = upload.and_then(|b| b.ready_at(Instant::now()));
        tokio::select! {
            biased;
            w = wr.write(c.out.front().map_or(&[][..], |f| &f[c.written..])), if !c.out.is_empty() && gate.is_none() => {
                let n = w?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                }
                if let Some(b) = upload {
                    b.take(n, Instant::now());
                }
                c.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                c.written += n;
                c.out_bytes -= n;
                if c.out.front().is_some_and(|f| c.written == f.len()) {
                    c.out.pop_front();
                    c.written = 0;
                }
            }
            r = rd.read(&mut buf), if c.reading => {
                let n = r?;
                let now = Instant::now();
                if n == 0 {
                    c.stream.handle_eof()?;
                    c.ended = true;
                    c.reading = false;
                } else {
                    c.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    c.stream.handle_input(now, &buf[..n])?;
                }
                c.events()?;
            }
            () = notify.notified() => {}
            _ = closed.changed(), if !c.ended => {}
            reason = swarm_ended(&mut c.control), if c.ended_by.is_none() && !c.ended => {
                // The swarm ends it: flush what is buffered, produce nothing more, then end.
                c.ended_by = Some(reason);
                c.ended = true;
                c.closing = true;
                c.reading = false;
            }
            () = sleep(gate), if gate.is_some() && !c.out.is_empty() => {}
            () = sleep(timer), if timer.is_some() => {
                c.stream.handle_timeout(Instant::now())?;
            }
        }
        c.pump()?;
        tracing::trace!(peer = label, out = c.out_bytes, "pumped");
    }
}

async fn sleep(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
