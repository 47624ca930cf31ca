//! Building the status (`peerhost status`, `<storage>/peerhost-status.json`): what the actor
//! tracks, joined with the node's counters and connections, the swarm's and the gateway's.

use std::time::{SystemTime, UNIX_EPOCH};

use peerhost_ids::DiscoveryKey;
use peerhost_store::Core;

use crate::actor::Context;
use crate::state::{self, Counts, QuotaStatus, State, Status};
use crate::tracking::Tracked;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Blocks held of `core` in `start..end`.
pub(crate) fn held_in(core: &mut Core, start: u64, end: u64) -> u64 {
    let mut n = 0;
    let mut i = start;
    while let Ok(Some(s)) = core.next_present(i, end) {
        let e = core.next_missing(s, end).ok().flatten().unwrap_or(end);
        n += e - s;
        i = e;
    }
    n
}

/// Blocks held of `core` in `0..length`.
pub(crate) fn held(core: &mut Core) -> u64 {
    let end = core.length();
    held_in(core, 0, end)
}

/// The status now.
pub(crate) async fn build(
    ctx: &Context,
    tracked: &Tracked,
    state: &State,
    quota: Option<QuotaStatus>,
    errors: Vec<String>,
    running: bool,
) -> Status {
    let node = &ctx.node;
    let mut webrtc = Vec::new();
    for h in ctx.rtc.get().into_iter().flatten() {
        webrtc.push(h.status().await);
    }
    let stats = node.log_stats();
    let mut logs = Vec::new();
    let mut session = Counts::default();
    let mut total = Counts::default();
    let entries: Vec<(&DiscoveryKey, _)> = tracked.logs.iter().collect();
    for (dkey, e) in entries {
        let hex = crate::hex(&dkey.0);
        let s: Counts = stats.get(dkey).copied().unwrap_or_default().into();
        let mut t = state.totals.get(&hex).copied().unwrap_or_default();
        t.add(&s);
        session.add(&s);
        total.add(&t);
        let (length, held_blocks, peers) = node.with(|r| {
            let peers = r.peer_count(dkey);
            r.core_mut(dkey)
                .map_or((0, 0, peers), |c| (c.length(), held(c), peers))
        });
        logs.push(state::LogStatus {
            key: e.key.to_z32(),
            discovery_key: hex,
            role: e.role.name().into(),
            community: e.community.map(|(k, _)| k.to_z32()),
            part: e.community.map(|(_, p)| p.name().into()),
            length,
            held: held_blocks,
            peers,
            session: s,
            total: t,
        });
    }
    logs.sort_by(|a, b| {
        (&a.community, a.part.as_deref().unwrap_or(""), &a.key).cmp(&(
            &b.community,
            b.part.as_deref().unwrap_or(""),
            &b.key,
        ))
    });
    let peers = node
        .peers()
        .into_iter()
        .map(|p| state::PeerStatus {
            public_key: crate::hex(&p.remote_public_key),
            address: p.label,
            transport: p.transport.into(),
            initiator: p.is_initiator,
            since_ms: unix_ms(p.since),
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
        })
        .collect();
    Status {
        version: 1,
        pid: std::process::id(),
        running,
        started_ms: unix_ms(ctx.started),
        updated_ms: unix_ms(SystemTime::now()),
        interval_ms: u64::try_from(ctx.status_interval.as_millis()).unwrap_or(0),
        public_key: crate::hex(&node.public_key()),
        dht: match &ctx.swarm {
            Some(s) => Some(s.status().await),
            None => None,
        },
        listen_tcp: ctx.tcp_addr.map(|a| a.to_string()),
        peers,
        logs,
        session,
        total,
        quota,
        upload_limit: ctx.upload_limit,
        errors,
        http: ctx.http.get().map(|h| state::HttpStatus {
            address: h.addr.to_string(),
            url: h.url.clone(),
            requests: h.counters.requests(),
            bytes_served: h.counters.bytes(),
            instance: h.instance.is_some(),
            registered_with: h.register.clone(),
            contributions: h
                .instance
                .as_ref()
                .map(|i| i.contributions())
                .unwrap_or_default(),
        }),
        stun: ctx.stun.get().map(crate::rtc::Stun::status),
        webrtc,
    }
}
