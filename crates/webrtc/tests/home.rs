//! A home peer signaled through its instance, end to end on loopback with real sockets: the
//! instance's gateway (its signaling relay, health checks and STUN) behind a TLS-terminating
//! proxy (so the home peer's long-poll is https, as it is to a real instance), the home peer
//! (`HomePeer`: the signed poll, the driver), and a str0m client offering like a browser
//! through `POST /v1/signal`. The answer's signature is checked against the node key before
//! the answer is used; the channel then serves the gateway's bodies. The instance lists the
//! peer by key once it has proven its logs through the poll, and delists it when it stops.
//!
//! Timeouts are hang guards only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerhost_gateway::api::Api;
use peerhost_gateway::signal::{IceServer, SignalLimits, SignedAnswer, verify_answer};
use peerhost_gateway::{
    CommunityInfo, Config as GatewayConfig, Cores, Instance, InstanceOptions, ServeOptions, client,
};
use peerhost_ids::KeyPair;
use peerhost_store::{CreateOptions, Store};
use peerhost_webrtc::frame::{Frame, SUBPROTOCOL};
use peerhost_webrtc::home::{HomeOptions, HomePeer};
use peerhost_webrtc::stun_server::{StunConfig, StunStats, serve_stun};
use serde_json::{Value, json};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const T: Duration = Duration::from_secs(10);
const GUARD: Duration = Duration::from_secs(30);

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

    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + T;
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

/// A TLS-terminating proxy on 127.0.0.1 in front of `to` (a self-signed certificate for
/// `localhost`, trusted by the gateway client): `https://localhost:PORT`.
async fn tls_proxy(to: SocketAddr) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().to_vec();
    client::add_root_certificates(std::slice::from_ref(&der));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der)], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    format!("https://localhost:{port}")
}

async fn get_json(url: &str) -> Value {
    let r = client::get(url, T).await.unwrap();
    assert_eq!(r.status, 200, "{url}");
    serde_json::from_slice(&r.body).unwrap()
}

async fn wait(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !f().await {
        assert!(Instant::now() < deadline, "hang guard: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reaches_a_home_peer_through_its_instance() {
    // The logs: the instance and the home peer hold the same store (a mirror would replicate).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut core = store
        .create(
            "posts",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[8; 32])),
        )
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("{{\"title\":\"post {i}\"}}").into_bytes())
        .collect();
    core.append(&blocks).unwrap();
    let key = core.key();
    let cores = Cores::new();
    cores.insert_core(core);

    // The instance: STUN, signaling, checks every 200 ms, behind TLS.
    let stun = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stun_addr = stun.local_addr().unwrap();
    tokio::spawn(serve_stun(
        stun,
        StunConfig::default(),
        Arc::new(StunStats::default()),
        std::future::pending(),
    ));
    let mut limits = SignalLimits::default();
    limits.check_timeout = Duration::from_secs(2);
    let instance = Arc::new(
        Instance::new(
            None,
            InstanceOptions::default()
                .allow_private_peers(true)
                .check_every(Duration::from_millis(200))
                .signal_limits(limits),
        )
        .ice_servers(vec![IceServer::stun(stun_addr)]),
    );
    instance.set_communities(vec![CommunityInfo::new(
        key,
        "c".into(),
        "C".into(),
        Some(key),
        None,
        None,
    )]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    tokio::spawn(peerhost_gateway::serve(
        listener,
        cores.clone(),
        GatewayConfig::default().instance(instance.clone()),
        ServeOptions::default(),
        std::future::pending(),
    ));
    tokio::spawn(peerhost_gateway::run_checks(
        instance.clone(),
        Arc::new(cores.clone()),
        std::future::pending(),
    ));
    let https = tls_proxy(plain).await;
    let base = format!("http://{plain}");

    // The home peer: no port of its own but its UDP socket; it learns the STUN server from
    // its first poll.
    let kp = KeyPair::from_seed(&[9; 32]);
    let home = HomePeer::start(
        cores.clone(),
        kp.clone(),
        &https,
        HomeOptions::default().bind("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(home.status().ice_servers, vec![IceServer::stun(stun_addr)]);
    let peer_hex = hex::encode(kp.public_key());
    wait("the instance lists the home peer", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([peer_hex])
    })
    .await;
    assert!(home.status().listed || home.status().checks > 0);
    let public = home.server().status().await.unwrap().public;
    assert_eq!(public, vec![home.server().local_addr()], "learned by STUN");

    // A browser (str0m here): offer through the instance, check the signature, connect.
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
    let offer = offer.to_sdp_string();
    let t0 = Instant::now();
    let r = client::post_json(
        &format!("{base}/v1/signal"),
        &json!({ "peer": peer_hex, "sdp": offer }),
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let signaled = t0.elapsed();
    let signed = SignedAnswer::parse(&r.body).unwrap();
    assert!(verify_answer(
        &kp.public_key(),
        &offer,
        &signed.sdp,
        &signed.signature
    ));
    assert!(signed.sdp.contains("a=fingerprint:"));
    let answer = str0m::change::SdpAnswer::from_sdp_string(&signed.sdp).unwrap();
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
    c.until("channel open and HELLO", |c| c.channel.is_some() && c.hello)
        .await;
    let connected = t0.elapsed();
    let ch = c.channel.unwrap();
    let api = Api::new(cores.clone(), GatewayConfig::default());
    let paths = [
        format!("/v1/logs/{}/head", key.to_hex()),
        format!(
            "/v1/logs/{}/blocks?start=20&end=40&length=40&fork=0",
            key.to_hex()
        ),
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
    c.until("answers", |c| c.answers.len() == paths.len()).await;
    for (i, p) in paths.iter().enumerate() {
        let want = api.get(p).await;
        assert_eq!(
            c.answers[&(i as u32)],
            (want.status, want.body.to_vec()),
            "{p}"
        );
    }
    eprintln!("signaled through the instance in {signaled:?}, connected in {connected:?}");
    let st = home.status();
    assert_eq!(st.answered, 1);
    assert!(st.checks >= 1 && st.connected, "{st:?}");

    // The instance's table shows it, with what its channels served.
    wait("counters reported", async || {
        let c = get_json(&format!("{base}/v1/contributions")).await;
        c["peers"][0]["requests"].as_u64().unwrap_or(0) >= 2
    })
    .await;

    // It stops: the next check gets no answer, it is delisted.
    home.shutdown().await;
    wait("delisted", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([])
    })
    .await;
}
