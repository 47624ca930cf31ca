//! What the gateway keeps of its answers (`protocol/gateway.md` §4.1): range answers addressed
//! by key, fork, length and range (their bytes never change), in each content coding a client
//! took, bounded by bytes; and each log's head answer until the log changes.
//!
//! - [`RangeCache`]: a CLOCK (second chance) cache of [`CachedRange`]s, charged by the bytes
//!   each holds (its identity body plus the compressed forms made so far); an answer larger
//!   than a quarter of the budget is never kept, so one cannot flush the rest;
//! - [`CachedRange`]: the identity body and, made on first demand and kept, its gzip and br
//!   forms, or the finding that compressing it does not pay ([`compress`]);
//! - [`HeadCache`]: a head answer per log, valid while the source reports the same
//!   [`HeadVersion`](crate::source::HeadVersion); at most `max` logs;
//! - [`Accepts`]: what an `Accept-Encoding` header allows.
//!
//! Bodies are [`Bytes`]: a hit hands the same allocation to every response (and to the WebRTC
//! data channels), never a copy.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use peerhost_ids::Key;

use crate::source::HeadVersion;

/// A content coding of a range answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: br`.
    Br,
}

impl Coding {
    /// The `Content-Encoding` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Br => "br",
        }
    }
}

/// The codings a client takes, read from its `Accept-Encoding` header (RFC 9110 §12.5.3):
/// a coding counts when named, or covered by `*`, with a nonzero `q`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    /// Takes gzip.
    pub gzip: bool,
    /// Takes br.
    pub br: bool,
}

impl Accepts {
    /// Identity only (no header, or a transport without codings).
    pub const NONE: Self = Self {
        gzip: false,
        br: false,
    };

    /// Parse an `Accept-Encoding` value. Unknown codings and malformed parts are ignored.
    pub fn parse(header: &str) -> Self {
        let (mut gzip, mut br, mut star) = (None, None, None);
        for part in header.split(',').take(32) {
            let mut it = part.split(';');
            let name = it.next().unwrap_or_default().trim();
            let mut ok = true;
            for p in it {
                let p = p.trim();
                if let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    ok = q.trim().parse::<f32>().is_ok_and(|q| q > 0.0);
                }
            }
            let slot = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if name.eq_ignore_ascii_case("br") {
                &mut br
            } else if name == "*" {
                &mut star
            } else {
                continue;
            };
            *slot = Some(ok);
        }
        Self {
            gzip: gzip.or(star).unwrap_or(false),
            br: br.or(star).unwrap_or(false),
        }
    }

    /// The codings to try, best first: br (smaller for text), then gzip.
    pub fn preferred(self) -> impl Iterator<Item = Coding> {
        [(self.br, Coding::Br), (self.gzip, Coding::Gzip)]
            .into_iter()
            .filter_map(|(ok, c)| ok.then_some(c))
    }
}

/// brotli quality of range answers: 5 compresses text nearly as well as 11 at a small fraction
/// of its time (each form is made once per range and kept).
const BR_QUALITY: u32 = 5;
/// brotli window (log2): a 4 MiB range fits whole.
const BR_WINDOW: u32 = 22;
/// gzip (deflate) level.
const GZIP_LEVEL: u32 = 6;

/// Whether a compressed form is worth keeping and sending: it must save an eighth of the
/// body and more than its headers cost (`Content-Encoding`, `Vary`: about 64 bytes).
pub fn pays(identity: usize, compressed: usize) -> bool {
    compressed + 64 < identity && compressed <= identity - identity / 8
}

/// `data` compressed with `coding`, or `None` when that does not [pay](pays).
pub fn compress(coding: Coding, data: &[u8]) -> Option<Bytes> {
    // Too small to gain anything after the headers.
    if data.len() < 128 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    match coding {
        Coding::Gzip => {
            let mut e =
                flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(GZIP_LEVEL));
            e.write_all(data).ok()?;
            e.finish().ok()?;
        }
        Coding::Br => {
            let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, BR_QUALITY, BR_WINDOW);
            w.write_all(data).ok()?;
            w.flush().ok()?;
            drop(w);
        }
    }
    pays(data.len(), out.len()).then(|| Bytes::from(out))
}

/// One immutable range answer: its body, and its compressed forms once made.
#[derive(Debug)]
pub struct CachedRange {
    identity: Bytes,
    gzip: OnceLock<Option<Bytes>>,
    br: OnceLock<Option<Bytes>>,
}

impl CachedRange {
    /// An answer with only its identity body so far.
    pub fn new(identity: Bytes) -> Self {
        Self {
            identity,
            gzip: OnceLock::new(),
            br: OnceLock::new(),
        }
    }

    /// The body as produced.
    pub fn identity(&self) -> &Bytes {
        &self.identity
    }

    fn slot(&self, coding: Coding) -> &OnceLock<Option<Bytes>> {
        match coding {
            Coding::Gzip => &self.gzip,
            Coding::Br => &self.br,
        }
    }

    /// The best form `accepts` allows that is already decided: `Ok((body, coding))`, or
    /// `Err(coding)` when the best candidate has not been tried yet (compress it, off the
    /// async runtime, with [`CachedRange::encode`]).
    pub fn pick(&self, accepts: Accepts) -> Result<(Bytes, Option<Coding>), Coding> {
        for coding in accepts.preferred() {
            match self.slot(coding).get() {
                Some(Some(b)) => return Ok((b.clone(), Some(coding))),
                Some(None) => {}
                None => return Err(coding),
            }
        }
        Ok((self.identity.clone(), None))
    }

    /// Make (once) the `coding` form; returns the bytes it added to this entry. When it does
    /// not pay, no other coding is tried either: what one general-purpose compressor cannot
    /// shrink by an eighth, the other will not.
    pub fn encode(&self, coding: Coding) -> usize {
        let mut made = false;
        let form = self.slot(coding).get_or_init(|| {
            made = true;
            compress(coding, &self.identity)
        });
        match form {
            Some(b) if made => b.len(),
            None if made => {
                for other in [Coding::Gzip, Coding::Br] {
                    let _ = self.slot(other).set(None);
                }
                0
            }
            _ => 0,
        }
    }

    /// Bytes this entry holds.
    fn cost(&self) -> usize {
        let extra =
            |s: &OnceLock<Option<Bytes>>| s.get().and_then(Option::as_ref).map_or(0, Bytes::len);
        ENTRY_OVERHEAD + self.identity.len() + extra(&self.gzip) + extra(&self.br)
    }
}

/// What an entry costs besides its bodies (key, slot, map entry, allocations), roughly.
const ENTRY_OVERHEAD: usize = 256;

/// The address of an immutable range answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RangeKey {
    /// The log.
    pub key: Key,
    /// The fork asked for.
    pub fork: u64,
    /// The length asked for.
    pub length: u64,
    /// First block asked for.
    pub start: u64,
    /// End asked for (the answer may hold a prefix).
    pub end: u64,
    /// For a set request (`start == end == 0`): a keyed hash of its runs (random key per
    /// gateway, so no client can make two sets collide on purpose); `0` for a range.
    pub set: u64,
}

struct Slot {
    key: RangeKey,
    entry: Arc<CachedRange>,
    cost: usize,
    referenced: bool,
}

#[derive(Default)]
struct Clock {
    map: HashMap<RangeKey, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
}

impl Clock {
    /// Evict one entry not referenced since the hand last passed it.
    fn evict_one(&mut self) -> bool {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            match &mut self.slots[i] {
                Some(s) if s.referenced => s.referenced = false,
                Some(_) => {
                    if let Some(s) = self.slots[i].take() {
                        self.map.remove(&s.key);
                        self.bytes -= s.cost;
                        self.free.push(i);
                    }
                    return true;
                }
                None => {}
            }
        }
        false
    }
}

/// Immutable range answers, at most `max_bytes` of them ([module docs](self)).
pub struct RangeCache {
    max_bytes: usize,
    inner: Mutex<Clock>,
}

impl std::fmt::Debug for RangeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("RangeCache")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish()
    }
}

impl RangeCache {
    /// A cache of at most `max_bytes` (0: keeps nothing).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer at `key`, if kept.
    pub fn get(&self, key: &RangeKey) -> Option<Arc<CachedRange>> {
        let mut c = self.lock();
        let i = *c.map.get(key)?;
        let s = c.slots[i].as_mut()?;
        s.referenced = true;
        Some(s.entry.clone())
    }

    /// Keep `entry` at `key` (an entry already there stays: both are the same bytes).
    /// Returns the entry kept.
    pub fn insert(&self, key: RangeKey, entry: Arc<CachedRange>) -> Arc<CachedRange> {
        let cost = entry.cost();
        if cost > self.max_bytes / 4 {
            return entry;
        }
        let mut c = self.lock();
        if let Some(&i) = c.map.get(&key) {
            if let Some(s) = &c.slots[i] {
                return s.entry.clone();
            }
        }
        while c.bytes + cost > self.max_bytes && c.evict_one() {}
        let slot = Slot {
            key,
            entry: entry.clone(),
            cost,
            referenced: false,
        };
        let i = match c.free.pop() {
            Some(i) => {
                c.slots[i] = Some(slot);
                i
            }
            None => {
                c.slots.push(Some(slot));
                c.slots.len() - 1
            }
        };
        c.map.insert(key, i);
        c.bytes += cost;
        entry
    }

    /// `entry` at `key` grew by `added` bytes (a compressed form): charge it, evicting others
    /// (or this one) to stay within the budget.
    pub fn grew(&self, key: &RangeKey, added: usize) {
        if added == 0 {
            return;
        }
        let mut c = self.lock();
        let Some(&i) = c.map.get(key) else {
            return;
        };
        if let Some(s) = c.slots[i].as_mut() {
            s.cost += added;
            c.bytes += added;
        }
        while c.bytes > self.max_bytes && c.evict_one() {}
    }

    /// Drop every answer of `key` on a fork other than `fork` (the log forked: those URLs
    /// now answer `409`).
    pub fn forget_forks(&self, key: &Key, fork: u64) {
        let mut c = self.lock();
        let gone: Vec<usize> = c
            .map
            .iter()
            .filter(|(k, _)| k.key == *key && k.fork != fork)
            .map(|(_, &i)| i)
            .collect();
        for i in gone {
            if let Some(s) = c.slots[i].take() {
                c.map.remove(&s.key);
                c.bytes -= s.cost;
                c.free.push(i);
            }
        }
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        let c = self.lock();
        (c.map.len(), c.bytes)
    }
}

/// A log's head answer and the version it was read at.
#[derive(Debug, Clone)]
struct Head {
    version: HeadVersion,
    body: Bytes,
}

/// Head answers, one per log, each valid while its log's [`HeadVersion`] stays the same; at
/// most `max` logs (a full cache drops an arbitrary one).
#[derive(Debug)]
pub struct HeadCache {
    max: usize,
    inner: Mutex<HashMap<Key, Head>>,
}

impl HeadCache {
    /// At most `max` heads (0: keeps nothing).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Head>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The head answer of `key` if it was read at `version`.
    pub fn get(&self, key: &Key, version: HeadVersion) -> Option<Bytes> {
        let c = self.lock();
        let h = c.get(key)?;
        (h.version == version).then(|| h.body.clone())
    }

    /// Keep `body`, the head answer of `key` read at `version`.
    pub fn insert(&self, key: Key, version: HeadVersion, body: Bytes) {
        if self.max == 0 {
            return;
        }
        let mut c = self.lock();
        if c.len() >= self.max && !c.contains_key(&key) {
            if let Some(k) = c.keys().next().copied() {
                c.remove(&k);
            }
        }
        c.insert(key, Head { version, body });
    }

    /// Heads held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no head is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rk(start: u64) -> RangeKey {
        RangeKey {
            key: Key([7; 32]),
            fork: 0,
            length: 1000,
            start,
            end: start + 1,
            set: 0,
        }
    }

    fn entry(n: usize) -> Arc<CachedRange> {
        Arc::new(CachedRange::new(Bytes::from(vec![b'x'; n])))
    }

    #[test]
    fn accept_encoding() {
        let a = Accepts::parse("gzip, deflate, br");
        assert_eq!(
            a,
            Accepts {
                gzip: true,
                br: true
            }
        );
        assert_eq!(
            a.preferred().collect::<Vec<_>>(),
            [Coding::Br, Coding::Gzip]
        );
        assert_eq!(
            Accepts::parse("gzip, br;q=0"),
            Accepts {
                gzip: true,
                br: false
            }
        );
        assert_eq!(
            Accepts::parse("GZIP;q=0.5"),
            Accepts {
                gzip: true,
                br: false
            }
        );
        assert_eq!(
            Accepts::parse("*"),
            Accepts {
                gzip: true,
                br: true
            }
        );
        assert_eq!(
            Accepts::parse("*, br;q=0"),
            Accepts {
                gzip: true,
                br: false
            }
        );
        assert_eq!(Accepts::parse("identity"), Accepts::NONE);
        assert_eq!(Accepts::parse(""), Accepts::NONE);
        assert_eq!(Accepts::parse("br;q=0.000, gzip;q=x"), Accepts::NONE);
    }

    #[test]
    fn text_is_compressed_and_noise_is_not() {
        let text = "peerhost moves the load of community sites onto their readers. ".repeat(200);
        for c in [Coding::Gzip, Coding::Br] {
            let z = compress(c, text.as_bytes()).unwrap();
            assert!(z.len() * 10 < text.len(), "{c:?}: {}", z.len());
        }
        let mut x = 1u64;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(compress(Coding::Gzip, &noise), None);
        assert_eq!(compress(Coding::Br, &noise), None);
        assert_eq!(compress(Coding::Br, b"tiny"), None);
        assert!(pays(1000, 800) && !pays(1000, 900) && !pays(100, 40));
    }

    #[test]
    fn a_range_is_compressed_once_per_coding() {
        let r = CachedRange::new(Bytes::from("a reader carries the load. ".repeat(100)));
        let both = Accepts {
            gzip: true,
            br: true,
        };
        assert_eq!(r.pick(Accepts::NONE).unwrap().1, None);
        assert_eq!(r.pick(both).unwrap_err(), Coding::Br);
        assert!(r.encode(Coding::Br) > 0);
        assert_eq!(r.encode(Coding::Br), 0, "made once");
        let (body, coding) = r.pick(both).unwrap();
        assert_eq!(coding, Some(Coding::Br));
        assert!(body.len() < r.identity().len());
        // gzip alone still needs making.
        let gz = Accepts {
            gzip: true,
            br: false,
        };
        assert_eq!(r.pick(gz).unwrap_err(), Coding::Gzip);

        // Incompressible: one try decides for both codings.
        let r = CachedRange::new(Bytes::from((0..=255u8).collect::<Vec<_>>()));
        assert_eq!(r.encode(Coding::Gzip), 0);
        assert_eq!(r.pick(both).unwrap(), (r.identity().clone(), None));
    }

    #[test]
    fn range_cache_stays_within_its_bytes() {
        let max = 64 * (1000 + ENTRY_OVERHEAD);
        let cache = RangeCache::new(max);
        for i in 0..1000 {
            cache.insert(rk(i), entry(1000));
            // Keep touching entry 0: CLOCK gives it a second chance every round.
            assert!(cache.get(&rk(0)).is_some(), "{i}");
            let (n, bytes) = cache.usage();
            assert!(bytes <= max && n <= 64, "{n} entries, {bytes} bytes");
        }
        assert!(cache.get(&rk(999)).is_some());
        assert!(cache.get(&rk(500)).is_none());
        // Growing an entry is charged.
        let (_, before) = cache.usage();
        cache.grew(&rk(999), 500);
        assert!(cache.usage().1 <= max && cache.usage().1 != before);
        // Too large for the budget: served, never kept.
        let big = entry(max);
        assert!(Arc::ptr_eq(&cache.insert(rk(5000), big.clone()), &big));
        assert!(cache.get(&rk(5000)).is_none());
        // Nothing kept with no budget.
        let none = RangeCache::new(0);
        none.insert(rk(1), entry(10));
        assert_eq!(none.usage(), (0, 0));
    }

    #[test]
    fn forks_are_forgotten() {
        let cache = RangeCache::new(1 << 20);
        let mut k = rk(1);
        cache.insert(k, entry(10));
        k.fork = 1;
        cache.insert(k, entry(10));
        cache.forget_forks(&k.key, 1);
        assert!(cache.get(&rk(1)).is_none());
        assert!(cache.get(&k).is_some());
        assert_eq!(cache.usage().0, 1);
    }

    #[test]
    fn heads_are_kept_per_version_and_bounded() {
        let c = HeadCache::new(2);
        let v = |length| HeadVersion {
            fork: 0,
            length,
            manifest: true,
        };
        c.insert(Key([1; 32]), v(5), Bytes::from_static(b"five"));
        assert_eq!(c.get(&Key([1; 32]), v(5)).unwrap(), "five");
        assert_eq!(c.get(&Key([1; 32]), v(6)), None);
        c.insert(Key([2; 32]), v(1), Bytes::new());
        c.insert(Key([3; 32]), v(1), Bytes::new());
        assert_eq!(c.len(), 2);
    }
}
