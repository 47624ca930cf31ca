//! The daemon's side of the control socket (`super`, `protocol/control.md`): open a
//! log by name or key, read a block, append blocks to a log we write, verify a log in steps
//! (streaming its progress).

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
/// A request, once its first byte came, must arrive whole within this: a client that sends a
/// length and stalls does not hold one of the [`MAX_CONNECTIONS`] slots for good.
const REQUEST: Duration = Duration::from_secs(10);

/// Bind `<storage>/control.sock` (replacing a dead daemon's: we hold the store's lock, so no
/// live daemon uses it) and serve it until the daemon stops. A path the kernel refuses (over
/// 107 bytes) only costs the feature: logged, not fatal.
pub(crate) fn start(daemon: &Daemon) -> Option<PathBuf> {
    let path = socket_path(daemon.storage());
    // Only the store's owner may talk to it: the socket's mode says so to the kernel, the
    // peer's credentials are checked again on each connection.
    let owner = match std::fs::metadata(daemon.storage()) {
        Ok(m) => std::os::unix::fs::MetadataExt::uid(&m),
        Err(e) => {
            tracing::warn!(storage = %daemon.storage().display(), "cannot stat the store ({e}): no control socket");
            return None;
        }
    };
    let listener = match bind_private(&path) {
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
                    Ok((s, _)) if from_owner(&s, owner) => s,
                    Ok(_) => continue,
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

/// Bind the socket where no other user can reach it before it is private: in a fresh `0700`
/// directory inside the store, made `0600` there, then renamed into place (a socket is bound to
/// its inode, so the rename keeps it). Binding at the final path and then restricting it left a
/// moment in which, under a permissive umask and a `0755` store, another local user could
/// connect and append to the owner's logs.
fn bind_private(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.with_file_name(format!(".control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let result = (|| {
        let staged = dir.join("s");
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        // Replaces a dead daemon's socket: we hold the store's lock, so no live daemon uses it.
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Whether the process at the other end runs as the store's owner (`SO_PEERCRED`); logs a
/// refusal.
fn from_owner(stream: &UnixStream, owner: u32) -> bool {
    match stream.peer_cred() {
        Ok(c) if c.uid() == owner => true,
        Ok(c) => {
            tracing::warn!(
                "control socket: refused a connection from uid {} (the store belongs to uid {owner})",
                c.uid()
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                "control socket: refused a connection whose credentials are unknown: {e}"
            );
            false
        }
    }
}

/// The next request's body, `None` when the client closed or stayed idle for [`IDLE`] between
/// requests. Once a request's first byte has come, the rest must come within [`REQUEST`].
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<Option<Vec<u8>>> {
    let first = match tokio::time::timeout(IDLE, stream.read_u8()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(None),
    };
    let rest = async {
        let mut prefix = vec![first];
        let len = loop {
            if let Some(len) = frame_len(&prefix)? {
                break len;
            }
            prefix.push(stream.read_u8().await?);
        };
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        Ok(body)
    };
    match tokio::time::timeout(REQUEST, rest).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "a request did not arrive whole in time",
        )),
    }
}

async fn serve(daemon: &Daemon, mut stream: UnixStream) -> std::io::Result<()> {
    loop {
        let Some(body) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let result = match proto::Request::decode(body.as_slice()) {
            Ok(proto::Request {
                op: Some(request::Op::Verify(v)),
            }) => {
                verify(daemon, v, &mut stream).await?;
                continue;
            }
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

/// Answer `Verify`: `progress` frames while the log is re-hashed on the blocking pool, then
/// `verified` or `error`. A client that goes away stops the work at its next progress frame.
async fn verify(daemon: &Daemon, v: proto::Verify, stream: &mut UnixStream) -> std::io::Result<()> {
    // Bounded: the work waits for a slow reader rather than piling frames up.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<response::Result>(4);
    let d = daemon.clone();
    let work = tokio::task::spawn_blocking(move || {
        let end = d.verify_log(&v.key, |p| {
            tx.blocking_send(response::Result::Progress(p)).is_ok()
        });
        let _ =
            tx.blocking_send(end.map_or_else(response::Result::Error, response::Result::Verified));
    });
    while let Some(result) = rx.recv().await {
        let resp = proto::Response {
            result: Some(result),
        };
        stream.write_all(&encode_frame(&resp)).await?;
    }
    let _ = work.await;
    Ok(())
}

impl Daemon {
    /// Re-hash the log `key` against its signed head (`Core::verify_start`) in steps of
    /// [`super::VERIFY_STEP_BYTES`], each holding the node only for itself: between steps its
    /// peers are served and appends go on (the length it began with is what is checked).
    /// `progress` is called at most every [`super::VERIFY_PROGRESS`]; `false` stops it.
    fn verify_log(
        &self,
        key: &[u8],
        mut progress: impl FnMut(proto::VerifyProgress) -> bool,
    ) -> Result<proto::VerifyReport, String> {
        let key = key_of(key)?;
        let dkey = key.discovery_key();
        let not_held = || format!("log {} is not in this store", key.to_z32());
        let mut v = self
            .ctx
            .node
            .with(|r| r.core_mut(&dkey).map(peerhost_store::Core::verify_start))
            .ok_or_else(not_held)?
            .map_err(|e| e.to_string())?;
        let mut last = std::time::Instant::now();
        if !progress(super::progress_of(&v)) {
            return Err("the command went away".into());
        }
        loop {
            let done = self
                .ctx
                .node
                .with(|r| {
                    r.core_mut(&dkey)
                        .map(|c| c.verify_step(&mut v, super::VERIFY_STEP_BYTES))
                })
                .ok_or_else(not_held)?
                .map_err(|e| e.to_string())?;
            if done {
                return Ok(super::report_of(v.report()));
            }
            if *self.ctx.stop.borrow() {
                return Err("the daemon is stopping: run the verification again".into());
            }
            if last.elapsed() >= super::VERIFY_PROGRESS {
                last = std::time::Instant::now();
                if !progress(super::progress_of(&v)) {
                    return Err("the command went away".into());
                }
            }
            // Let the connections and appends waiting for the node take it first.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

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
            request::Op::Info(i) => {
                let key = key_of(&i.key)?;
                let dkey = key.discovery_key();
                let got = self
                    .ctx
                    .node
                    .with(|r| r.core_mut(&dkey).map(super::detail_of));
                match got {
                    None => Err(format!("log {} is not in this store", key.to_z32())),
                    Some(d) => Ok(response::Result::Detail(d.map_err(|e| e.to_string())?)),
                }
            }
            request::Op::List(_) => {
                let logs = super::list_of(&self.ctx.store, |key| {
                    let dkey = key.discovery_key();
                    self.ctx
                        .node
                        .with(|r| r.core(&dkey).map(|c| (c.length(), c.writable())))
                })
                .map_err(|e| e.to_string())?;
                Ok(response::Result::Logs(proto::LogList { logs }))
            }
            request::Op::Create(c) => {
                let options = peerhost_store::CreateOptions::default().compat(c.compat);
                let core = self
                    .ctx
                    .store
                    .create(&c.name, options)
                    .map_err(|e| e.to_string())?;
                let info = proto::LogInfo {
                    key: core.key().0.to_vec(),
                    length: core.length(),
                    writable: core.writable(),
                };
                drop(core);
                // Served like every other local log, on this daemon's swarm. (A blocking
                // thread of the runtime: it may wait for the actor.)
                tokio::runtime::Handle::current()
                    .block_on(self.serve_new_logs())
                    .map_err(|e| e.to_string())?;
                Ok(response::Result::Log(info))
            }
            // Streamed (`verify`), never answered here.
            request::Op::Verify(_) => Err("verify is answered in frames".into()),
            request::Op::Append(a) => {
                let key = key_of(&a.key)?;
                super::check_blocks(&a.blocks).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_is_dropped_an_idle_client_is_not_rushed() {
        // A length, then nothing: cut off after REQUEST, not held for IDLE.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[5, 1, 2]).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = read_request(&mut server).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), REQUEST);

        // Trickled bytes do not extend it.
        let (mut client, mut server) = tokio::io::duplex(64);
        let trickle = tokio::spawn(async move {
            client.write_all(&[100]).await.unwrap();
            for _ in 0..99 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(&[0]).await.is_err() {
                    return;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let e = read_request(&mut server).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), REQUEST);
        drop(server);
        trickle.await.unwrap();

        // A whole request after a long idle wait is read; then a close is the end.
        let (mut client, mut server) = tokio::io::duplex(64);
        let send = tokio::spawn(async move {
            tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
            client.write_all(&[3, 7, 8, 9]).await.unwrap();
        });
        assert_eq!(
            read_request(&mut server).await.unwrap(),
            Some(vec![7, 8, 9])
        );
        send.await.unwrap();
        assert_eq!(read_request(&mut server).await.unwrap(), None);
    }

    #[tokio::test]
    async fn only_the_stores_owner_is_served() {
        let me = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(tempfile::tempdir().unwrap().path()).unwrap(),
        );
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(from_owner(&a, me));
        assert!(!from_owner(&a, me.wrapping_add(1)));
    }

    /// The socket's name appears in the store only by the rename of a socket already private
    /// (issue 17 item 8), never by `bind` at its path: a socket bound there exists under the
    /// umask (`0777 & !umask`) until a chmod, and another local user can connect in that window.
    /// The kernel's own record of the directory (inotify) says how the name came to be.
    #[tokio::test]
    async fn the_socket_is_never_created_at_its_path() {
        use rustix::fs::inotify;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::SOCKET);
        let fd =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(
            &fd,
            dir.path(),
            inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::ATTRIB,
        )
        .unwrap();
        let _listener = bind_private(&path).unwrap();
        // The kernel queued the events during the calls; non-blocking: the end is EAGAIN.
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut events = inotify::Reader::new(&fd, &mut buf);
        let mut seen = Vec::new();
        while let Ok(e) = events.next() {
            if e.file_name()
                .is_some_and(|n| n.to_bytes() == super::super::SOCKET.as_bytes())
            {
                seen.push(e.events());
            }
        }
        assert_eq!(seen, [inotify::ReadFlags::MOVED_TO], "{seen:?}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn the_socket_is_private_from_its_first_moment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::SOCKET);
        std::fs::write(&path, b"a dead daemon's socket").unwrap();
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The staging directory is gone, the socket answers at its final path.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(super::super::SOCKET)]);
        let (_c, accepted) = tokio::join!(UnixStream::connect(&path), listener.accept());
        accepted.unwrap();
    }
}
