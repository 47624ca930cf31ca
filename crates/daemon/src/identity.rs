//! The daemon's Noise identity: `<storage>/peerhost-identity.json` (`protocol/node.md`),
//! created with a fresh key pair at the first start, private to its owner (mode 0600).

use std::path::{Path, PathBuf};

use peerhost_ids::KeyPair;

use crate::error::StartError;

/// The identity file's name inside the storage directory.
pub const IDENTITY_FILE: &str = "peerhost-identity.json";

fn invalid(path: PathBuf, message: String) -> StartError {
    StartError::File {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    }
}

/// The key pair kept in `storage`, created if there is none yet.
pub(crate) fn load(storage: &Path) -> Result<KeyPair, StartError> {
    let path = storage.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(b) => {
            let v: serde_json::Value =
                serde_json::from_slice(&b).map_err(|e| invalid(path.clone(), e.to_string()))?;
            let seed = v["seed"].as_str().and_then(hex_decode32).ok_or_else(|| {
                invalid(
                    path.clone(),
                    "no 32-byte hex \"seed\": delete the file to get a new identity".into(),
                )
            })?;
            Ok(KeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = KeyPair::generate();
            let v = serde_json::json!({
                "publicKey": crate::hex(&kp.public_key()),
                "seed": crate::hex(&kp.seed()),
            });
            let tmp = path.with_extension("json.tmp");
            write_private(&tmp, v.to_string().as_bytes())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|source| StartError::File { path, source })?;
            Ok(kp)
        }
        Err(source) => Err(StartError::File { path, source }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(bytes)
}

fn hex_decode32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(dir.path()).unwrap();
        let b = load(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_identity_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"{\"seed\":\"00\"}").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(IDENTITY_FILE) && e.contains("delete the file"),
            "{e}"
        );
    }
}
