//! The daemon's side of the control socket (`super`, `protocol/control.md`): open a
//! log by name or key, read a block, append blocks to a log we write.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peerhost_ids::Key;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::{encode_frame, frame_len, proto, socket_path};
use crate::Daemon;
use proto::{request, response};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// A connection that sends no request for this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// Bind `<storage>/control.sock` (replacing a dead daemon's: we hold the store's lock, so no
/// live daemon uses it) and serve it until the daemon stops. A path the kernel refuses (over
/// 107 bytes) only costs the feature: logged, not fatal.
pub(crate) fn start(daemon: &Daemon) -> Option<PathBuf> {
    let path = socket_path(daemon.storage());
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                "cannot listen on the control socket ({e}): `peerhost post`, `import` and `feed` \
                 on this store will wait for the daemon to stop"
            );
            return None;
        }
    };
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), "cannot make the control socket private: {e}");
    }
    let d = daemon.clone();
    let mut stop = daemon.ctx.stop.subscribe();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = crate::stopped(&mut stop) => return,
            };
            let d = d.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(&d, stream).await {
                    tracing::debug!("control connection: {e}");
                }
                drop(permit);
            });
        }
    });
    Some(path)
}

async fn serve(daemon: &Daemon, mut stream: UnixStream) -> std::io::Result<()> {
    loop {
        let mut prefix = Vec::with_capacity(4);
        let len = loop {
            let b = match tokio::time::timeout(IDLE, stream.read_u8()).await {
                Ok(Ok(b)) => b,
                Ok(Err(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && prefix.is_empty() =>
                {
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            };
            prefix.push(b);
            if let Some(len) = frame_len(&prefix)? {
                break len;
            }
        };
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        let result = match proto::Request::decode(body.as_slice()) {
            Ok(proto::Request { op: Some(op) }) => {
                let d = daemon.clone();
                tokio::task::spawn_blocking(move || d.control(op))
                    .await
                    .unwrap_or_else(|e| Err(format!("the request failed: {e}")))
            }
            Ok(_) => {
                Err("an empty or unknown request: is `peerhost` newer than the daemon?".into())
            }
            Err(_) => Err("an undecodable request".into()),
        };
        let resp = proto::Response {
            result: Some(result.unwrap_or_else(response::Result::Error)),
        };
        stream.write_all(&encode_frame(&resp)).await?;
    }
}

impl Daemon {
    /// Answer one control request (blocking: it reads and appends on disk).
    fn control(&self, op: request::Op) -> Result<response::Result, String> {
        match op {
            request::Op::Open(o) => {
                let key = self.resolve_local(&o.query)?;
                let dkey = key.discovery_key();
                let found = self
                    .ctx
                    .node
                    .with(|r| r.core(&dkey).map(|c| (c.length(), c.writable())));
                let Some((length, writable)) = found else {
                    return Err(format!("log {} is not in this store", o.query));
                };
                Ok(response::Result::Log(proto::LogInfo {
                    key: key.0.to_vec(),
                    length,
                    writable,
                }))
            }
            request::Op::Get(g) => {
                let key = key_of(&g.key)?;
                let dkey = key.discovery_key();
                let got = self.ctx.node.with(|r| {
                    r.core_mut(&dkey)
                        .map(|c| c.get(g.index).map_err(|e| e.to_string()))
                });
                match got {
                    None => Err(format!("log {} is not in this store", key.to_z32())),
                    Some(r) => Ok(response::Result::Block(proto::Block { data: r? })),
                }
            }
            request::Op::Append(a) => {
                let key = key_of(&a.key)?;
                let length = self.append(&key, &a.blocks).map_err(|e| e.to_string())?;
                Ok(response::Result::Length(length))
            }
        }
    }

    /// A log of the store by local name or key.
    fn resolve_local(&self, query: &str) -> Result<Key, String> {
        if let Ok(Some(key)) = self.ctx.store.name_key(query) {
            return Ok(key);
        }
        Key::parse(query).map_err(|e| {
            format!("{e}, or the name of a log in this store (see `peerhost log list`)")
        })
    }
}

fn key_of(bytes: &[u8]) -> Result<Key, String> {
    <[u8; 32]>::try_from(bytes)
        .map(Key)
        .map_err(|_| "a key that is not 32 bytes".to_owned())
}
