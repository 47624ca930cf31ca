//! The tokio driver over real UDP sockets on loopback: a STUN server, the driver serving a
//! real store through the gateway's `Api`, and a str0m client offering like a browser. The
//! bodies on the channel are byte for byte what `Api::get` (and so HTTP) answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerhost_gateway::api::Api;
use peerhost_gateway::{Config as GatewayConfig, Cores};
use peerhost_ids::KeyPair;
use peerhost_store::{CreateOptions, Store};
use peerhost_webrtc::driver::{Config, Server};
use peerhost_webrtc::frame::{Frame, SUBPROTOCOL};
use peerhost_webrtc::stun_server::{StunConfig, StunStats, serve_stun};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    channel: Option<ChannelId>,
    partial: HashMap<u32, (u16, u32, Vec<u8>)>,
    answers: HashMap<u32, (u16, Vec<u8>)>,
    hello: bool,
}

impl Client {
    async fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    self.socket
                        .send_to(&t.contents, t.destination)
                        .await
                        .unwrap();
                }
                Output::Event(Event::ChannelOpen(id, _)) => self.channel = Some(id),
                Output::Event(Event::ChannelData(d)) => match Frame::decode(&d.data).unwrap() {
                    Frame::Hello { .. } => self.hello = true,
                    Frame::Response {
                        id,
                        status,
                        body_len,
                        body,
                        ..
                    } => {
                        self.partial.insert(id, (status, body_len, body.to_vec()));
                        self.finish(id);
                    }
                    Frame::Data { id, body } => {
                        self.partial.get_mut(&id).unwrap().2.extend_from_slice(body);
                        self.finish(id);
                    }
                    other => panic!("{other:?}"),
                },
                Output::Event(_) => {}
            }
        }
    }

    fn finish(&mut self, id: u32) {
        let (_, len, body) = &self.partial[&id];
        if body.len() == *len as usize {
            let (status, _, body) = self.partial.remove(&id).unwrap();
            self.answers.insert(id, (status, body));
        }
    }

    /// Drive the client until `done` or 10 s.
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 2048];
        loop {
            let t = self.drain().await;
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out: {what}");
            let wait = t
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: self.local,
                            contents: buf[..n].try_into().unwrap(),
                        },
                    );
                    self.rtc.handle_input(input).unwrap();
                }
                _ => self
                    .rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .unwrap(),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_a_store_through_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut core = store
        .create(
            "posts",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[5; 32])),
        )
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            format!(
                "{{\"title\":\"post {i}\",\"body\":\"{}\"}}",
                "x".repeat(i * 7)
            )
            .into_bytes()
        })
        .collect();
    core.append(&blocks).unwrap();
    let key = core.key().to_hex();
    let cores = Cores::new();
    cores.insert_core(core);
    let api = Api::new(cores, GatewayConfig::default());

    let stun = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stun_addr = stun.local_addr().unwrap();
    let stats = Arc::new(StunStats::default());
    tokio::spawn(serve_stun(
        stun,
        StunConfig::default(),
        stats.clone(),
        std::future::pending(),
    ));

    let config = Config {
        stun_servers: vec![stun_addr],
        ..Config::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), api.clone(), config)
        .await
        .unwrap();
    // On loopback the STUN server sees the socket itself.
    assert_eq!(server.public_addrs(), &[server.local_addr()]);

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut sdp = rtc.sdp_api();
    sdp.add_channel_with_config(ChannelConfig {
        label: "peerhost".into(),
        protocol: SUBPROTOCOL.into(),
        ..Default::default()
    });
    let (offer, pending) = sdp.apply().unwrap();
    let answered = server.answer(offer.to_sdp_string()).await.unwrap();
    let answer = str0m::change::SdpAnswer::from_sdp_string(&answered.sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let mut c = Client {
        rtc,
        socket,
        local,
        channel: None,
        partial: HashMap::new(),
        answers: HashMap::new(),
        hello: false,
    };
    let t0 = Instant::now();
    c.until("channel open and HELLO", |c| c.channel.is_some() && c.hello)
        .await;
    let setup = t0.elapsed();
    let ch = c.channel.unwrap();
    let paths = [
        "/v1/logs".to_owned(),
        format!("/v1/logs/{key}/head"),
        format!("/v1/logs/{key}/blocks?start=280&end=300&length=300&fork=0"),
        format!("/v1/logs/{key}/blocks?start=0&end=300"),
        format!("/v1/logs/{key}/blocks?start=5&end=2"),
        "/v1/nope".to_owned(),
    ];
    for (i, p) in paths.iter().enumerate() {
        let msg = Frame::Request {
            id: i as u32,
            path: p,
        }
        .encode();
        assert!(c.rtc.channel(ch).unwrap().write(true, &msg).unwrap());
        c.drain().await;
    }
    c.until("every answer", |c| c.answers.len() == paths.len())
        .await;
    for (i, p) in paths.iter().enumerate() {
        let want = api.get(p).await;
        let (status, body) = &c.answers[&(i as u32)];
        assert_eq!(*status, want.status, "{p}");
        assert!(
            *body == want.body,
            "{p}: the channel's body differs from the gateway's"
        );
    }
    assert_eq!(c.answers[&3].0, 200);
    assert_eq!(c.answers[&4].0, 400);
    assert_eq!(c.answers[&5].0, 404);

    // The gateway's counters saw every answer (the api.get calls above count nothing: only
    // the HTTP middleware and the WebRTC driver count).
    assert_eq!(api.config().counters.requests(), paths.len() as u64);
    let status = server.status().await.unwrap();
    let p = &status.peers[0];
    assert_eq!(p.id, answered.id);
    assert_eq!(p.channels, 1);
    assert_eq!(p.stats.answered, paths.len() as u64);
    assert!(p.connect_ms.is_some());
    eprintln!(
        "setup {setup:?}, driver connect {} ms",
        p.connect_ms.unwrap()
    );
    server.shutdown().await;
}
