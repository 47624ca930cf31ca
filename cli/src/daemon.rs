//! `peerhost status`: what a running daemon (`serve`, `mirror`) is doing, read from the status
//! file it rewrites every few seconds (`protocol/node.md`), so it works while the daemon holds
//! the store's lock and needs no socket.

use crate::term::safe;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use peerhost_daemon::state::{STATUS_FILE, Status};

/// `peerhost status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print the status file's JSON.
    #[arg(long)]
    json: bool,
}

/// Bytes for people: 1.2 MB.
pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the daemon that wrote `st` still runs: it said so, its pid exists (Linux), and it
/// wrote within three intervals.
fn alive(st: &Status) -> bool {
    let fresh = now_ms().saturating_sub(st.updated_ms) <= 3 * st.interval_ms.max(1000);
    let pid = Path::new("/proc")
        .is_dir()
        .then(|| Path::new(&format!("/proc/{}", st.pid)).exists());
    st.running && fresh && pid.unwrap_or(true)
}

pub(crate) fn status(dir: &Path, args: StatusArgs) -> anyhow::Result<()> {
    let st = match Status::load(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no daemon has run on {} (no {STATUS_FILE}): start one with `peerhost serve` or \
             `peerhost mirror KEY`",
            dir.display()
        ),
        Err(e) => return Err(e).context("cannot read the status file"),
    };
    if args.json {
        // `running` as the text view judges it: a daemon that was killed never wrote false.
        let mut st = st;
        st.running = alive(&st);
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let up = (now_ms().saturating_sub(st.started_ms)) / 1000;
    if alive(&st) {
        writeln!(out, "daemon: running (pid {}, up {}s)", st.pid, up)?;
    } else {
        let ago = now_ms().saturating_sub(st.updated_ms) / 1000;
        writeln!(
            out,
            "daemon: not running (last status {ago}s ago{}); the numbers below are its last",
            if st.running {
                ", it was killed"
            } else {
                ", stopped cleanly"
            }
        )?;
    }
    writeln!(out, "key:    {}", st.public_key)?;
    if let Some(d) = &st.dht {
        writeln!(
            out,
            "dht:    {}, {} nodes known, {} topics announced, {} looked up",
            d.address, d.nodes, d.announced, d.lookups
        )?;
        match &d.offered_relay {
            Some(k) => writeln!(
                out,
                "relays: {} to fall back to; offering one: {k}",
                d.relays
            )?,
            None => writeln!(out, "relays: {} to fall back to", d.relays)?,
        }
    }
    if let Some(t) = &st.listen_tcp {
        writeln!(out, "tcp:    {t}")?;
    }
    if let Some(h) = &st.http {
        writeln!(
            out,
            "http:   {} ({}), {} requests, {} served{}",
            h.address,
            h.url,
            h.requests,
            human(h.bytes_served),
            if h.instance { ", instance" } else { "" }
        )?;
        for i in &h.registered_with {
            writeln!(out, "        registering with {i}")?;
        }
    }
    if let Some(s) = &st.stun {
        writeln!(
            out,
            "stun:   {} ({}), {} answered, {} dropped, {} over the rate",
            s.address,
            safe(&s.url),
            s.answered,
            s.dropped,
            s.limited
        )?;
    }
    for r in &st.webrtc {
        let listed = match (r.listed, &r.problem) {
            (true, _) => "listed".to_owned(),
            (false, Some(p)) => format!("not listed ({})", safe(p)),
            (false, None) => "not listed".to_owned(),
        };
        writeln!(
            out,
            "webrtc: registered with {}: {}, {}; {} browsers, {} channels open, {} served \
             ({} requests); public {}",
            safe(&r.instance),
            if r.connected {
                "connected"
            } else {
                "NOT connected"
            },
            listed,
            r.connections,
            r.channels,
            human(r.bytes_served),
            r.requests,
            if r.public.is_empty() {
                "unknown".to_owned()
            } else {
                r.public.join(", ")
            },
        )?;
        if let Some(e) = &r.last_error {
            writeln!(out, "        {}", safe(e))?;
        }
    }
    if let Some(q) = &st.quota {
        writeln!(
            out,
            "quota:  {} of {} used{}",
            human(q.used),
            human(q.limit),
            if q.full {
                " — FULL: downloads stopped, still serving"
            } else {
                ""
            }
        )?;
    }
    if let Some(u) = st.upload_limit {
        writeln!(out, "upload: at most {}/s", human(u))?;
    }
    writeln!(
        out,
        "served: {} blocks, {} this run; {} blocks, {} in all",
        st.session.uploaded_blocks,
        human(st.session.uploaded_bytes),
        st.total.uploaded_blocks,
        human(st.total.uploaded_bytes)
    )?;
    writeln!(
        out,
        "got:    {} blocks, {} this run; {} blocks, {} in all",
        st.session.downloaded_blocks,
        human(st.session.downloaded_bytes),
        st.total.downloaded_blocks,
        human(st.total.downloaded_bytes)
    )?;
    writeln!(out, "\npeers ({}):", st.peers.len())?;
    for p in &st.peers {
        writeln!(
            out,
            "  {:<4} {:<28} {}…  in {:>9}  out {:>9}{}",
            p.transport,
            p.address,
            p.public_key.get(..16).unwrap_or(&p.public_key),
            human(p.bytes_in),
            human(p.bytes_out),
            if p.initiator { "  (we dialled)" } else { "" }
        )?;
    }
    writeln!(out, "\nlogs ({}):", st.logs.len())?;
    writeln!(
        out,
        "  {:<7} {:<14} {:<11} {:>8} {:>8} {:>5} {:>10} {:>10}",
        "role", "log", "part", "length", "held", "peers", "up", "down"
    )?;
    for l in &st.logs {
        writeln!(
            out,
            "  {:<7} {:<14} {:<11} {:>8} {:>8} {:>5} {:>10} {:>10}",
            l.role,
            format!("{}…", l.key.get(..12).unwrap_or(&l.key)),
            l.part.as_deref().unwrap_or("-"),
            l.length,
            l.held,
            l.peers,
            human(l.total.uploaded_bytes),
            human(l.total.downloaded_bytes),
        )?;
    }
    if let Some(h) = st.http.as_ref().filter(|h| h.instance) {
        let (rtc, gateways): (Vec<_>, Vec<_>) = h
            .contributions
            .iter()
            .partition(|c| c.transport.as_deref() == Some("webrtc"));
        writeln!(
            out,
            "\ncontributions ({} peers registered):",
            gateways.len()
        )?;
        writeln!(
            out,
            "  {:<32} {:<9} {:>10} {:>9} {:>9}  first seen",
            "gateway", "health", "served", "requests", "uptime"
        )?;
        for c in gateways {
            writeln!(
                out,
                "  {:<32} {:<9} {:>10} {:>9} {:>8}s  {}s ago",
                safe(&c.url).to_string(),
                if c.healthy { "healthy" } else { "failing" },
                human(c.bytes_served),
                c.requests,
                c.uptime_ms / 1000,
                now_ms().saturating_sub(c.first_seen_ms) / 1000,
            )?;
            match (&c.problem, &c.detail) {
                (Some(p), Some(d)) => writeln!(out, "    {}: {}", safe(p), safe(d))?,
                (Some(p), None) => writeln!(out, "    {}", safe(p))?,
                _ => {}
            }
        }
        writeln!(out, "\nwebrtc peers ({} polling or known):", rtc.len())?;
        writeln!(
            out,
            "  {:<64} {:<9} {:>10} {:>10} {:>9} {:>9}",
            "node key", "health", "checked", "served", "requests", "uptime"
        )?;
        for c in rtc {
            let checked = if c.checked_ms == 0 {
                "never".to_owned()
            } else {
                format!("{}s ago", now_ms().saturating_sub(c.checked_ms) / 1000)
            };
            writeln!(
                out,
                "  {:<64} {:<9} {:>10} {:>10} {:>9} {:>8}s",
                safe(&c.key).to_string(),
                if c.healthy { "healthy" } else { "failing" },
                checked,
                human(c.bytes_served),
                c.requests,
                c.uptime_ms / 1000,
            )?;
            match (&c.problem, &c.detail) {
                (Some(p), Some(d)) => writeln!(out, "    {}: {}", safe(p), safe(d))?,
                (Some(p), None) => writeln!(out, "    {}", safe(p))?,
                _ => {}
            }
        }
    }
    if !st.errors.is_empty() {
        writeln!(out, "\nproblems:")?;
        for e in &st.errors {
            writeln!(out, "  {}", safe(e))?;
        }
    }
    Ok(())
}
