//! One swarm connection ↔ the node's replicator, in one task.
//!
//! The HyperDHT driver already runs the secret stream (its handshake was the Noise IK inside
//! PEER_HANDSHAKE) and the swarm hands us whole messages through bounded queues. The loop:
//! 1. reserve a slot in the connection's send queue while we have a frame to send, then send
//!    it (taking upload tokens);
//! 2. receive a message (only while the replicator wants input) and hand it over;
//! 3. wake on the replicator's notify (another task queued frames for us).
//!
//! After each step frames move replicator → our buffer while it is below `HIGH_WATER`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use peerhost_replication::{ConnId, ConnectionInfo};
use peerhost_swarm::Connection;
use tokio::sync::Notify;

use crate::{ConnectionError, Counters, Node, Registration};

/// Bytes of frames buffered here before we stop pulling more from the replicator (the
/// connection's own queue holds 64 more messages).
const HIGH_WATER: usize = 256 * 1024;

pub(crate) async fn run(
    node: Node,
    mut conn: Connection,
    label: &str,
) -> Result<(), ConnectionError> {
    let now = Instant::now();
    let info = ConnectionInfo {
        is_initiator: conn.is_initiator(),
        handshake_hash: conn.handshake_hash(),
        remote_public_key: conn.remote_public_key(),
    };
    let id = node.with(|r| r.add_connection(info, now));
    let notify = Arc::new(Notify::new());
    let counters = Arc::new(Counters::default());
    node.register(
        id,
        Registration {
            notify: notify.clone(),
            counters: counters.clone(),
            remote_public_key: info.remote_public_key,
            label: label.to_owned(),
            transport: "dht",
            is_initiator: info.is_initiator,
        },
    );
    let result = drive(&node, &mut conn, id, &notify, &counters).await;
    node.unregister(id);
    result
}

/// Replicator → `out` while below the high-water mark; whether to keep reading.
fn pump(
    node: &Node,
    id: ConnId,
    out: &mut VecDeque<Vec<u8>>,
    out_bytes: &mut usize,
) -> Result<bool, ConnectionError> {
    node.with(|r| {
        if let Some(e) = r.connection_error(id) {
            return Err(ConnectionError::Replication {
                message: e.to_string(),
                code: e.code(),
            });
        }
        while *out_bytes < HIGH_WATER {
            let Some(frame) = r.poll_transmit(id) else {
                break;
            };
            *out_bytes += frame.len();
            out.push_back(frame);
        }
        Ok(r.wants_input(id))
    })
}

async fn drive(
    node: &Node,
    conn: &mut Connection,
    id: ConnId,
    notify: &Notify,
    counters: &Counters,
) -> Result<(), ConnectionError> {
    let sender = conn.sender();
    let mut closed = node.closed();
    let upload = node.upload();
    let mut out: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out_bytes = 0usize;
    let mut reading = pump(node, id, &mut out, &mut out_bytes)?;
    loop {
        if *closed.borrow() {
            // Closing: what is queued in the connection is flushed when it is dropped.
            return Ok(());
        }
        let gate = upload.and_then(|b| b.ready_at(Instant::now()));
        tokio::select! {
            biased;
            permit = sender.reserve(), if !out.is_empty() && gate.is_none() => {
                let Ok(permit) = permit else {
                    return Err(closed_error(conn));
                };
                if let Some(frame) = out.pop_front() {
                    out_bytes -= frame.len();
                    if let Some(b) = upload {
                        b.take(frame.len(), Instant::now());
                    }
                    counters.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    permit.send(frame);
                }
            }
            m = conn.recv(), if reading => {
                let Some(m) = m else {
                    return match conn.error() {
                        Some(e) => Err(std::io::Error::other(e).into()),
                        None => Ok(()),
                    };
                };
                counters.bytes_in.fetch_add(m.len() as u64, Ordering::Relaxed);
                let now = Instant::now();
                node.with(|r| r.handle_input(id, &m, now));
            }
            () = notify.notified() => {}
            _ = closed.changed() => {}
            () = sleep(gate), if gate.is_some() && !out.is_empty() => {}
        }
        reading = pump(node, id, &mut out, &mut out_bytes)?;
    }
}

fn closed_error(conn: &Connection) -> ConnectionError {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        conn.error().unwrap_or_else(|| "connection closed".into()),
    )
    .into()
}

async fn sleep(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
