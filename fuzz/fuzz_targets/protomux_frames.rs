//! A protomux connection fed arbitrary stream messages, mixed with local commands: no panic, no
//! unbounded growth, and an error always shuts the mux down.
//!
//! Input: a sequence of records. A byte below 0xf0 starts a message of that many bytes (cut at
//! the end of the input); 0xf0.. are commands: open, send, close, cork, uncork, answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhost_protomux::{ChannelHandle, Event, Mux};

const PROTOCOLS: &[&str] = &["p", "q", "hypercore/alpha"];

fuzz_target!(|data: &[u8]| {
    let mut mux = Mux::default();
    mux.pair("p", None);
    mux.pair("hypercore/alpha", None);
    let mut channels: Vec<ChannelHandle> = Vec::new();
    let mut asked: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        i += 1;
        let arg = data.get(i).copied().unwrap_or(0) as usize;
        match b {
            0xf0 => {
                i += 1;
                let id = [arg as u8];
                let proto = PROTOCOLS[arg % PROTOCOLS.len()];
                if let Ok(ch) = mux.open(proto, (arg & 4 != 0).then_some(&id[..]), b"hs") {
                    channels.push(ch);
                }
            }
            0xf1 if !channels.is_empty() => {
                i += 1;
                let ch = channels[arg % channels.len()];
                let _ = mux.send(ch, arg as u64 % 12, &data[i.min(data.len())..]);
            }
            0xf2 if !channels.is_empty() => {
                i += 1;
                let ch = channels.remove(arg % channels.len());
                mux.close(ch);
            }
            0xf3 => mux.cork(),
            0xf4 => mux.uncork(),
            0xf5 => {
                i += 1;
                if let Some((p, id)) = asked.pop() {
                    if arg & 1 == 0 {
                        if let Ok(ch) = mux.open(&p, id.as_deref(), b"") {
                            channels.push(ch);
                        }
                    } else {
                        mux.reject(&p, id.as_deref());
                    }
                }
            }
            0xf6.. => {}
            n => {
                let end = (i + n as usize).min(data.len());
                let msg = &data[i..end];
                i = end;
                if mux.handle_input(msg).is_err() {
                    assert!(mux.is_closed());
                    assert!(mux.poll_transmit().is_none());
                }
            }
        }
        while let Some(frame) = mux.poll_transmit() {
            assert!(!frame.is_empty());
        }
        while let Some(e) = mux.poll_event() {
            match e {
                Event::RemoteOpen { protocol, id, .. } => {
                    assert!(asked.len() < 10_000);
                    asked.push((protocol, id));
                }
                Event::ChannelClosed { channel, .. } | Event::Rejected { channel, .. } => {
                    channels.retain(|c| *c != channel);
                }
                _ => {}
            }
        }
        if mux.is_closed() {
            break;
        }
    }
    mux.handle_stream_closed();
    while mux.poll_event().is_some() {}
});
