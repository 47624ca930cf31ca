//! A FIFO of byte chunks with a running length: the send queue and the readable buffer.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of `chunks[0]` already consumed.
    head: usize,
    len: usize,
}

impl ByteQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        // Small writes are appended to the last chunk to keep the chunk count low.
        if let Some(last) = self.chunks.back_mut() {
            if last.len() + data.len() <= 64 * 1024 {
                last.extend_from_slice(data);
                self.len += data.len();
                return;
            }
        }
        self.push(data.to_vec());
    }

    /// Copy up to `out.len()` bytes out of the front of the queue.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let avail = &front[self.head..];
            let k = avail.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&avail[..k]);
            n += k;
            self.head += k;
            if self.head == front.len() {
                self.chunks.pop_front();
                self.head = 0;
            }
        }
        self.len -= n;
        n
    }

    /// Remove up to `max` bytes from the front as one `Vec`.
    pub(crate) fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.len);
        let mut out = vec![0u8; n];
        let got = self.read(&mut out);
        debug_assert_eq!(got, n);
        out
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo() {
        let mut q = ByteQueue::default();
        q.push_slice(b"hello ");
        q.push(b"world".to_vec());
        assert_eq!(q.len(), 11);
        assert_eq!(q.take(3), b"hel");
        let mut out = [0u8; 20];
        assert_eq!(q.read(&mut out), 8);
        assert_eq!(&out[..8], b"lo world");
        assert!(q.is_empty());
        assert_eq!(q.take(5), b"");
    }
}
