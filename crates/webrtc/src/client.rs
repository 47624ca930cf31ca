//! A minimal offering side for tests (feature `client`): a str0m peer that does what the page
//! does (`web/boot/signal.js`, `web/boot/transport-rtc.js`) on one UDP socket: offer a
//! `peerhost/1` channel through an instance's `POST /v1/signal`, check the answer's signature
//! against the node key before using it, connect, wait for HELLO, then send REQUESTs and
//! reassemble RESPONSE + DATA per id. Host candidates only: for loopback and LAN tests.
//!
//! Not for production: no ICE servers, one channel, no flow control beyond HELLO's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_gateway::client;
use peerhost_gateway::signal::{SignedAnswer, verify_answer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::frame::{Frame, SUBPROTOCOL};

/// A browser-like client connected to one home peer.
#[derive(Debug)]
pub struct Browser {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    channel: Option<ChannelId>,
    hello: bool,
    next_id: u32,
    partial: HashMap<u32, (u16, u32, Vec<u8>)>,
    answers: HashMap<u32, (u16, Vec<u8>)>,
    /// Time from the offer to the instance's answer.
    pub signaled: Duration,
    /// Time from the offer to HELLO.
    pub connected: Duration,
}

/// Why the client failed, in words.
pub type Error = String;

fn err(e: impl std::fmt::Display) -> Error {
    e.to_string()
}

impl Browser {
    /// Offer through the instance at `instance` (`http(s)://HOST:PORT`) to the home peer
    /// `peer` (its node key), bind on `bind_ip` (port 0), and wait until the channel is open
    /// and HELLO arrived, at most `timeout`.
    pub async fn connect(
        instance: &str,
        peer: &[u8; 32],
        bind_ip: std::net::IpAddr,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let socket = UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .await
            .map_err(err)?;
        let local = socket.local_addr().map_err(err)?;
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(err)?);
        let mut sdp = rtc.sdp_api();
        sdp.add_channel_with_config(ChannelConfig {
            label: "peerhost".into(),
            protocol: SUBPROTOCOL.into(),
            ..Default::default()
        });
        let (offer, pending) = sdp.apply().ok_or("no offer to make")?;
        let offer = offer.to_sdp_string();
        let t0 = Instant::now();
        let body = serde_json::json!({ "peer": hex::encode(peer), "sdp": offer });
        let url = format!("{}/v1/signal", instance.trim_end_matches('/'));
        let r = client::post_json(&url, &body, timeout)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if r.status != 200 {
            return Err(format!(
                "{url}: HTTP {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let signaled = t0.elapsed();
        let signed = SignedAnswer::parse(&r.body).map_err(err)?;
        if !verify_answer(peer, &offer, &signed.sdp, &signed.signature) {
            return Err("the answer is not signed by the peer's node key".into());
        }
        let answer = str0m::change::SdpAnswer::from_sdp_string(&signed.sdp).map_err(err)?;
        rtc.sdp_api().accept_answer(pending, answer).map_err(err)?;
        let mut b = Self {
            rtc,
            socket,
            local,
            channel: None,
            hello: false,
            next_id: 1,
            partial: HashMap::new(),
            answers: HashMap::new(),
            signaled,
            connected: Duration::ZERO,
        };
        b.until(timeout, |b| b.channel.is_some() && b.hello).await?;
        b.connected = t0.elapsed();
        Ok(b)
    }

    /// Request `path` (a gateway GET path) and wait for the whole answer: status and body.
    pub async fn get(&mut self, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), Error> {
        let ch = self.channel.ok_or("no channel")?;
        let id = self.next_id;
        self.next_id += 1;
        let msg = Frame::Request { id, path }.encode();
        let mut channel = self.rtc.channel(ch).ok_or("the channel closed")?;
        if !channel.write(true, &msg).map_err(err)? {
            return Err("the channel did not take the request".into());
        }
        self.until(timeout, |b| b.answers.contains_key(&id)).await?;
        self.answers.remove(&id).ok_or_else(|| "no answer".into())
    }

    async fn drain(&mut self) -> Result<Instant, Error> {
        loop {
            match self.rtc.poll_output().map_err(err)? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::ChannelOpen(id, _)) => self.channel = Some(id),
                Output::Event(Event::ChannelData(d)) => match Frame::decode(&d.data) {
                    Ok(Frame::Hello { .. }) => self.hello = true,
                    Ok(Frame::Response {
                        id,
                        status,
                        body_len,
                        body,
                        ..
                    }) => {
                        self.partial.insert(id, (status, body_len, body.to_vec()));
                        self.finish(id);
                    }
                    Ok(Frame::Data { id, body }) => {
                        if let Some(p) = self.partial.get_mut(&id) {
                            p.2.extend_from_slice(body);
                        }
                        self.finish(id);
                    }
                    Ok(Frame::GoAway { code, reason }) => {
                        return Err(format!("GOAWAY {code:?}: {reason}"));
                    }
                    Ok(other) => return Err(format!("unexpected frame {other:?}")),
                    Err(e) => return Err(format!("bad frame: {e}")),
                },
                Output::Event(Event::ChannelClose(_)) => {
                    return Err("the channel closed".into());
                }
                Output::Event(_) => {}
            }
        }
    }

    fn finish(&mut self, id: u32) {
        let done = self
            .partial
            .get(&id)
            .is_some_and(|(_, len, body)| body.len() >= *len as usize);
        if done {
            if let Some((status, _, body)) = self.partial.remove(&id) {
                self.answers.insert(id, (status, body));
            }
        }
    }

    async fn until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 2048];
        loop {
            let t = self.drain().await?;
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("timed out".into());
            }
            let wait = t
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            let input = match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: self.local,
                        contents: buf[..n].try_into().map_err(err)?,
                    },
                ),
                _ => Input::Timeout(Instant::now()),
            };
            self.rtc.handle_input(input).map_err(err)?;
        }
    }
}
