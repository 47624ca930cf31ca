//! Health checks of registered peers (`protocol/gateway.md` §7): the challenge a gateway answers
//! with its node key, the latest block of every community log proved against the instance's own
//! head, the ranges readers reported, and the loops that run them.

use super::*;

/// Ask the gateway at `addr` to prove it holds `key`: `GET /v1/identity?challenge=…`, answered
/// with a signature over the challenge and the origin it was asked at.
pub(super) async fn challenge_peer(
    addr: SocketAddr,
    key: [u8; 32],
    policy: address::Policy,
    timeout: Duration,
) -> Result<(), Failure> {
    let challenge = auth::new_challenge();
    let path = format!("/v1/identity?challenge={}", hex::encode(challenge));
    let res = client::get_at(addr, &path, policy, timeout)
        .await
        .map_err(|e| Failure::of_client("challenge: ", &e))?;
    if res.status != 200 {
        return Err(Failure::new(
            "CHALLENGE_FAILED",
            format!("challenge: HTTP {} {}", res.status, body_start(&res.body)),
        ));
    }
    let bad = |what: &str| Failure::new("CHALLENGE_FAILED", format!("challenge: {what}"));
    let v: serde_json::Value =
        serde_json::from_slice(&res.body).map_err(|_| bad("the answer is not JSON"))?;
    let field = |name: &str| v[name].as_str().and_then(|s| hex::decode(s).ok());
    let answered: Option<[u8; 32]> = field("key").and_then(|k| k.try_into().ok());
    if answered != Some(key) {
        return Err(bad(
            "answered with another key than the one that registered",
        ));
    }
    let sig: [u8; 64] = field("signature")
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("no signature"))?;
    if !auth::verify_challenge(&key, &address::canonical_url(addr), &challenge, &sig) {
        return Err(bad("the signature does not verify"));
    }
    Ok(())
}

pub(super) fn body_start(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// The instance's own head of `key`, which a peer must prove; `None` for an empty log (nothing
/// to prove yet).
pub(crate) async fn head_to_prove<S: LogSource>(
    source: &Arc<S>,
    key: Key,
) -> Result<Option<SignedHead>, Failure> {
    let s = source.clone();
    let head = tokio::task::spawn_blocking(move || s.head(&key))
        .await
        .map_err(|e| Failure::new("INTERNAL", e.to_string()))?
        .map_err(|e| Failure::new("INTERNAL", e.to_string()))?;
    Ok(head.filter(|h| h.length > 0))
}

/// The request for the last block of `key` at `head`, with its proof.
pub(crate) fn last_block_path(key: &Key, head: &SignedHead) -> String {
    let l = head.length;
    format!(
        "/v1/logs/{}/blocks?start={}&end={l}&length={l}&fork={}",
        key.to_hex(),
        l - 1,
        head.fork
    )
}

/// Judge a peer's answer to [`last_block_path`]: a 200 whose proof verifies against the
/// instance's own `head`.
pub(crate) fn judge_last_block(
    key: &Key,
    head: &SignedHead,
    status: u16,
    body: &[u8],
) -> Result<(), Failure> {
    judge_range(key, head, status, body, head.length - 1..head.length)
}

/// Judge a peer's answer to a request for `blocks` of `key` at `head` (its length and fork):
/// a 200 whose proof verifies against the instance's own `head` (a prefix of the range is
/// fine: gateways cut long answers).
pub(super) fn judge_range(
    key: &Key,
    head: &SignedHead,
    status: u16,
    body: &[u8],
    blocks: std::ops::Range<u64>,
) -> Result<(), Failure> {
    let log = format!("log {}: ", key.to_hex());
    if status != 200 {
        let code = if status == 416 {
            "BEHIND"
        } else {
            "HTTP_STATUS"
        };
        return Err(Failure::new(
            code,
            format!("{log}HTTP {status} {}", body_start(body)),
        ));
    }
    let trusted = TrustedHead {
        fork: head.fork,
        length: head.length,
        tree_hash: head.tree_hash,
    };
    range::verify(body, &trusted, blocks)
        .map(drop)
        .map_err(|e| Failure::new("BAD_PROOF", format!("{log}bad proof: {e}")))
}

/// Check one peer: for every community log the instance holds with at least one block, the
/// peer must serve the last block with a proof against the instance's own head.
pub(super) async fn check_peer<S: LogSource>(
    source: &Arc<S>,
    addr: SocketAddr,
    keys: &[Key],
    policy: address::Policy,
    timeout: Duration,
) -> Result<(), Failure> {
    for key in keys {
        let Some(head) = head_to_prove(source, *key).await? else {
            continue;
        };
        let log = format!("log {}: ", key.to_hex());
        let res = client::get_at(addr, &last_block_path(key, &head), policy, timeout)
            .await
            .map_err(|e| Failure::of_client(&log, &e))?;
        judge_last_block(key, &head, res.status, &res.body)?;
    }
    Ok(())
}

/// The check a reader's report asked for: the usual [`check_peer`], then the reported blocks
/// of `urgent.log` if it is one of the community logs (`keys`), at most
/// [`crate::report::MAX_REPORTED_BLOCKS`] of them, proven against the instance's own head.
pub(super) async fn check_reported<S: LogSource>(
    source: &Arc<S>,
    addr: SocketAddr,
    keys: &[Key],
    urgent: &Urgent,
    policy: address::Policy,
    timeout: Duration,
) -> Result<(), Failure> {
    check_peer(source, addr, keys, policy, timeout).await?;
    if urgent.range.is_empty() || !keys.contains(&urgent.log) {
        return Ok(());
    }
    let Some(head) = head_to_prove(source, urgent.log).await? else {
        return Ok(());
    };
    if urgent.range.start >= head.length {
        return Ok(());
    }
    let (start, end) = (urgent.range.start, urgent.range.end.min(head.length));
    let path = format!(
        "/v1/logs/{}/blocks?start={start}&end={end}&length={}&fork={}",
        urgent.log.to_hex(),
        head.length,
        head.fork
    );
    let log = format!("log {}: ", urgent.log.to_hex());
    let res = client::get_at(addr, &path, policy, timeout)
        .await
        .map_err(|e| Failure::of_client(&log, &e))?;
    judge_range(&urgent.log, &head, res.status, &res.body, start..end)
}

/// The checks readers' reports asked for, at most [`CHECKS_IN_FLIGHT`] at once; each is
/// recorded like a periodic check (a failure delists the peer).
pub(super) async fn run_reported<S: LogSource>(
    instance: &Instance,
    source: &Arc<S>,
    keys: Arc<[Key]>,
) {
    let policy = instance.options.policy();
    let timeout = instance.options.check_timeout;
    let now = now_ms();
    let mut todo = instance
        .reports
        .take()
        .into_iter()
        .filter_map(|u| instance.checkable(&u.url, now).map(|e| (e, u)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < CHECKS_IN_FLIGHT {
            let Some((entry, urgent)) = todo.next() else {
                break;
            };
            let (source, keys) = (source.clone(), keys.clone());
            running.spawn(async move {
                let result =
                    check_reported(&source, entry.addr, &keys, &urgent, policy, timeout).await;
                (entry, result)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        if let Ok((entry, result)) = done {
            match &result {
                Err(e) => {
                    tracing::info!(peer = %entry.row.url, code = e.code, "reported by a reader, failed its check: {}", e.detail)
                }
                Ok(()) => {
                    tracing::debug!(peer = %entry.row.url, "reported by a reader, passed its check")
                }
            }
            instance.record_reported_check(&entry.row.url, entry.key, result);
        }
    }
}

/// The instance's check loop: every `check_every`, challenge every new peer (a peer is
/// health-checked only once its gateway proved it holds the key that registered it) and check
/// every proven one, at most [`CHECKS_IN_FLIGHT`] at once; only peers that registered or
/// reported within `stale_after` are contacted. WebRTC peers are checked at the same pace
/// through their polls ([`crate::signal::run_checks`]). Ends with `shutdown`.
pub async fn run_checks<S: LogSource>(
    instance: Arc<Instance>,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    // WebRTC peers are checked through their polls (crate::signal), beside the HTTP ones.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut rx2 = rx.clone();
    let rtc = crate::signal::run_checks(instance.clone(), source.clone(), async move {
        let _ = rx2.wait_for(|stop| *stop).await;
    });
    let http = run_http_checks(instance, source, async move {
        let mut rx = rx;
        let _ = rx.wait_for(|stop| *stop).await;
    });
    let stop = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    tokio::join!(rtc, http, stop);
}

pub(super) async fn run_http_checks<S: LogSource>(
    instance: Arc<Instance>,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let policy = instance.options.policy();
    loop {
        let due = instance.due(now_ms());
        let keys: Vec<Key> = instance
            .communities()
            .iter()
            .flat_map(|c| c.keys().collect::<Vec<_>>())
            .collect();
        // Up to CHECKS_IN_FLIGHT peers at once: a table of unreachable peers costs one
        // timeout per batch, not one per peer.
        let keys: Arc<[Key]> = keys.into();
        let mut running = tokio::task::JoinSet::new();
        let mut due = due.into_iter();
        loop {
            while running.len() < CHECKS_IN_FLIGHT {
                let Some((entry, challenge)) = due.next() else {
                    break;
                };
                let (source, keys) = (source.clone(), keys.clone());
                let timeout = instance.options.check_timeout;
                running.spawn(async move {
                    let result = if challenge {
                        challenge_peer(entry.addr, entry.key, policy, timeout).await
                    } else {
                        check_peer(&source, entry.addr, &keys, policy, timeout).await
                    };
                    (entry, challenge, result)
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            if let Ok((entry, challenge, result)) = done {
                if let Err(e) = &result {
                    tracing::debug!(peer = %entry.row.url, code = e.code, "{}", e.detail);
                }
                if challenge {
                    instance.record_challenge(&entry.row.url, entry.key, result);
                } else {
                    instance.record_check(&entry.row.url, entry.key, result);
                }
            }
        }
        // Until the next round: the checks readers' reports ask for, as they come.
        let next = tokio::time::Instant::now() + instance.options.check_every;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(next) => break,
                () = instance.reports.notified() => {
                    run_reported(&instance, &source, keys.clone()).await;
                }
            }
        }
    }
}
