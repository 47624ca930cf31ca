//! [`Blocks`] and [`AppendBlocks`] for a log in the local store (feature `store`).

use peerhost_store::{Core, CoreError};

use crate::blocks::{AppendBlocks, Blocks};

impl Blocks for Core {
    type Error = CoreError;

    fn length(&self) -> u64 {
        // The inherent method (inherent impls win path resolution): no recursion.
        Self::length(self)
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, CoreError> {
        self.get(seq)
    }

    fn fork(&self) -> u64 {
        Self::fork(self)
    }
}

impl AppendBlocks for Core {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, CoreError> {
        self.append(blocks)
    }
}

#[cfg(test)]
mod tests {
    use peerhost_store::{CreateOptions, Store};

    use crate::{Bee, Range};

    #[test]
    fn a_bee_in_a_store_log_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = {
            let store = Store::open(dir.path()).unwrap();
            let mut core = store.create("index", CreateOptions::default()).unwrap();
            let mut bee = Bee::new(&mut core);
            let mut b = bee.batch();
            for i in 0..500u32 {
                b.put(format!("k{i:04}").as_bytes(), &i.to_be_bytes())
                    .unwrap();
            }
            b.flush().unwrap();
            bee.del(b"k0100").unwrap();
            assert_eq!(core.length(), 502);
            core.key()
        };
        let store = Store::open(dir.path()).unwrap();
        let mut core = store.open_core("index").unwrap();
        assert_eq!(core.key(), key);
        let mut bee = Bee::new(&mut core);
        assert!(bee.header().unwrap().unwrap().is_hyperbee());
        assert_eq!(bee.get(b"k0100").unwrap(), None);
        let e = bee.get(b"k0499").unwrap().unwrap();
        assert_eq!(e.value, Some(499u32.to_be_bytes().to_vec()));
        let last = bee.range(Range::prefix(b"k00").reverse().limit(2)).unwrap();
        let keys: Vec<_> = last.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, vec![b"k0099".to_vec(), b"k0098".to_vec()]);
        // A truncation (a new fork) drops what the cache held: block 501 is a new block.
        bee.log_mut().truncate(501).unwrap();
        assert!(bee.get(b"k0100").unwrap().is_some());
        bee.put(b"k0100", b"again").unwrap();
        assert_eq!(
            bee.get(b"k0100").unwrap().unwrap().value,
            Some(b"again".to_vec())
        );
    }
}
