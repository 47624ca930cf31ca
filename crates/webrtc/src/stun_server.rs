//! A standalone STUN binding server on a tokio UDP socket (what `serve --stun ADDR` runs):
//! [`crate::stun::answer`] for each datagram, within a per-source [`RateLimit`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::stun::{self, RateLimit};

/// Limits of the STUN server.
#[derive(Debug, Clone)]
pub struct StunConfig {
    /// Answers per second per client (IPv4 address or IPv6 /64).
    pub rate: u32,
    /// Answers at once per client.
    pub burst: u32,
    /// Clients tracked by the rate limit.
    pub max_clients: usize,
}

impl Default for StunConfig {
    fn default() -> Self {
        Self {
            rate: 20,
            burst: 40,
            max_clients: 65_536,
        }
    }
}

/// What the server did.
#[derive(Debug, Default)]
pub struct StunStats {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Binding responses (or 420s) sent.
    pub answered: AtomicU64,
    /// Datagrams dropped: not a binding request, malformed.
    pub dropped: AtomicU64,
    /// Requests over a client's rate.
    pub limited: AtomicU64,
}

impl StunStats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Answer binding requests on `socket` until `shutdown` completes.
pub async fn serve_stun(
    socket: UdpSocket,
    config: StunConfig,
    stats: Arc<StunStats>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut limit = RateLimit::new(config.rate, config.burst, config.max_clients);
    let mut buf = vec![0u8; stun::MAX_MESSAGE + 1];
    tokio::pin!(shutdown);
    loop {
        let (n, from): (usize, SocketAddr) = tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(()),
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors of earlier sends surface as recv errors: not fatal.
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => return Err(e),
            },
        };
        StunStats::bump(&stats.received);
        let Some(reply) = stun::answer(&buf[..n], from) else {
            StunStats::bump(&stats.dropped);
            continue;
        };
        if !limit.allow(from.ip(), Instant::now()) {
            StunStats::bump(&stats.limited);
            continue;
        }
        if socket.send_to(&reply, from).await.is_ok() {
            StunStats::bump(&stats.answered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Binding, Builder};

    #[tokio::test]
    async fn answers_bindings_over_udp_within_the_rate() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let stats = Arc::new(StunStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = StunConfig {
            rate: 1,
            burst: 3,
            ..StunConfig::default()
        };
        let task = tokio::spawn(serve_stun(server, config, stats.clone(), async {
            let _ = stopped.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = client.local_addr().unwrap();
        let mut b = Binding::new(addr, Instant::now());
        let (to, req) = b.poll_transmit(Instant::now()).unwrap();
        client.send_to(&req, to).await.unwrap();
        let mut buf = [0u8; 128];
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(b.handle_response(&buf[..n]), Some(me));
        // Garbage and indications get nothing; past the burst, nothing either.
        client.send_to(b"garbage", addr).await.unwrap();
        let ind = Builder::new(stun::BINDING_INDICATION, [1; 12]).finish();
        client.send_to(&ind, addr).await.unwrap();
        for _ in 0..5 {
            client.send_to(&req, addr).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(stats.received.load(Ordering::Relaxed), 8);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.answered.load(Ordering::Relaxed), 3);
        assert_eq!(stats.limited.load(Ordering::Relaxed), 3);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
