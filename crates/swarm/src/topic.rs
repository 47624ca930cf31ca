//! One joined topic (hyperswarm `lib/peer-discovery.js`): its sessions, whether it announces
//! and/or looks up, and when it refreshes. Pure: the driver runs the DHT operations a
//! [`Plan`] asks for and reports back with [`Topic::handle_done`]; time comes in as `now`,
//! randomness as a jitter argument.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Time between two refreshes of a topic, plus [`RANDOM_JITTER`] (`REFRESH_INTERVAL`).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Random extra delay, uniform in `[0, 2 min]` (`RANDOM_JITTER`).
pub const RANDOM_JITTER: Duration = Duration::from_secs(2 * 60);
/// A refresh timer firing this much later than planned means the machine slept: refresh
/// after a fresh jitter instead (`DELAY_GRACE_PERIOD`).
pub const DELAY_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// How a session takes part in a topic (JS `join(topic, { server, client })`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinOptions {
    /// Announce the topic and accept connections from peers that find it (default true).
    pub server: bool,
    /// Look the topic up and dial the peers found (default true).
    pub client: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            server: true,
            client: true,
        }
    }
}

impl JoinOptions {
    /// Announce only.
    pub fn server() -> Self {
        Self {
            server: true,
            client: false,
        }
    }

    /// Look up only.
    pub fn client() -> Self {
        Self {
            server: false,
            client: true,
        }
    }

    /// Both (the default).
    pub fn both() -> Self {
        Self::default()
    }
}

/// The DHT work of one refresh (JS `_refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Identifies the refresh; only the latest one counts.
    pub(crate) generation: u64,
    /// `dht.announce(topic, keyPair, relayAddresses)`.
    pub(crate) announce: bool,
    /// The announce's `clear` (the topic's first announce).
    pub(crate) clear: bool,
    /// `dht.lookup(topic)` (JS gets peers from the announce query itself; our announce does not
    /// return records, so a server+client topic runs both walks).
    pub(crate) lookup: bool,
    /// `lookupAndUnannounce`: was a server, is now a client only.
    pub(crate) unannounce: bool,
}

/// What [`Topic::refresh`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A refresh in this mode is already running: wait for it.
    Running,
    /// Run this plan.
    Start(Plan),
    /// The previous instance of this topic is still leaving (unannouncing): the refresh runs
    /// when [`Topic::undefer`] is called (JS `wait`).
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    due: Instant,
    start: Instant,
    delay: Duration,
}

/// JS `PeerDiscovery`.
#[derive(Debug)]
pub(crate) struct Topic {
    sessions: BTreeMap<u64, JoinOptions>,
    /// Mode of the latest refresh (JS `isServer` / `isClient`).
    mode: JoinOptions,
    generations: u64,
    /// The latest refresh while it runs, and whether it announces.
    running: Option<(u64, bool)>,
    first_announce: bool,
    needs_unannounce: bool,
    timer: Option<Timer>,
    /// Waiting for the previous instance to finish leaving; `true` in the tuple when a refresh
    /// was asked for meanwhile.
    deferred: Option<bool>,
    destroyed: bool,
}

impl Topic {
    /// A new topic; `wait` when a previous instance of it is still leaving.
    pub(crate) fn new(wait: bool) -> Self {
        Self {
            sessions: BTreeMap::new(),
            mode: JoinOptions {
                server: false,
                client: false,
            },
            generations: 0,
            running: None,
            first_announce: true,
            needs_unannounce: false,
            timer: None,
            deferred: wait.then_some(false),
            destroyed: false,
        }
    }

    /// Add or change a session (JS `session.refresh({ server, client })` bookkeeping).
    pub(crate) fn set_session(&mut self, id: u64, opts: JoinOptions) {
        self.sessions.insert(id, opts);
    }

    /// Remove a session; how many remain.
    pub(crate) fn remove_session(&mut self, id: u64) -> usize {
        self.sessions.remove(&id);
        self.sessions.len()
    }

    pub(crate) fn has_session(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Server if any session is, client if any session is.
    pub(crate) fn wanted(&self) -> JoinOptions {
        JoinOptions {
            server: self.sessions.values().any(|s| s.server),
            client: self.sessions.values().any(|s| s.client),
        }
    }

    /// Is this topic looking peers up (JS `isClient`)?
    pub(crate) fn is_client(&self) -> bool {
        self.mode.client
    }

    /// A refresh is running or deferred (JS `_currentRefresh` is set).
    pub(crate) fn is_busy(&self) -> bool {
        self.running.is_some() || self.deferred.is_some()
    }

    pub(crate) fn needs_unannounce(&self) -> bool {
        self.needs_unannounce
    }

    /// JS `refresh()`: join the running refresh if the mode is unchanged, else start one (a
    /// refresh in the old mode keeps running, its result is ignored).
    pub(crate) fn refresh(&mut self) -> Step {
        let want = self.wanted();
        if let Some(asked) = &mut self.deferred {
            *asked = true;
            self.mode = want;
            return Step::Deferred;
        }
        if want == self.mode && self.running.is_some() {
            return Step::Running;
        }
        self.mode = want;
        Step::Start(self.start())
    }

    /// The previous instance finished leaving: run the refresh asked for meanwhile, if any.
    pub(crate) fn undefer(&mut self) -> Option<Plan> {
        let asked = self.deferred.take()?;
        (asked && !self.destroyed).then(|| self.start())
    }

    fn start(&mut self) -> Plan {
        self.generations += 1;
        let server = self.mode.server;
        let clear = server && self.first_announce;
        if clear {
            self.first_announce = false;
        }
        let unannounce = !server && self.needs_unannounce;
        if server {
            self.needs_unannounce = true;
        }
        self.running = Some((self.generations, server));
        Plan {
            generation: self.generations,
            announce: server,
            clear,
            lookup: self.mode.client,
            unannounce,
        }
    }

    /// Whether `generation` is the refresh whose result counts.
    pub(crate) fn is_latest(&self, generation: u64) -> bool {
        self.running.is_some_and(|(g, _)| g == generation)
    }

    /// A refresh finished. Returns true when it was the latest (its peers count, and flushes
    /// waiting on the topic resolve); then the next refresh is planned `REFRESH_INTERVAL +
    /// jitter` later (JS `_refreshLater(false)`), whether it succeeded or not.
    pub(crate) fn handle_done(
        &mut self,
        now: Instant,
        generation: u64,
        ok: bool,
        jitter: Duration,
    ) -> bool {
        let Some((g, announcing)) = self.running else {
            return false;
        };
        if g != generation {
            return false;
        }
        self.running = None;
        if !self.destroyed {
            self.schedule(now, REFRESH_INTERVAL + jitter);
        }
        if ok && !announcing {
            // The unannounce that came with this lookup is done.
            self.needs_unannounce = false;
        }
        true
    }

    fn schedule(&mut self, now: Instant, delay: Duration) {
        self.timer = Some(Timer {
            due: now + delay,
            start: now,
            delay,
        });
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|t| t.due)
    }

    /// The refresh timer; true when a refresh should start now. A timer that fired more than
    /// [`DELAY_GRACE_PERIOD`] late re-arms with only the jitter (JS: the laptop slept).
    pub(crate) fn handle_timeout(&mut self, now: Instant, jitter: Duration) -> bool {
        let Some(t) = self.timer else {
            return false;
        };
        if t.due > now {
            return false;
        }
        self.timer = None;
        if now.saturating_duration_since(t.start) > t.delay + DELAY_GRACE_PERIOD {
            self.schedule(now, jitter);
            return false;
        }
        true
    }

    /// Leave (JS `_destroy` / `_abort`): no more refreshes. The driver then waits for a
    /// running refresh ([`Topic::is_busy`]) and unannounces if [`Topic::needs_unannounce`].
    pub(crate) fn destroy(&mut self) {
        self.destroyed = true;
        self.timer = None;
        self.sessions.clear();
        if self.deferred.is_some() {
            self.deferred = None;
        }
    }

    /// The unannounce after leaving is done.
    pub(crate) fn unannounced(&mut self) {
        self.needs_unannounce = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: Duration = Duration::from_secs(7);

    #[test]
    fn server_then_client_unannounces_once() {
        let t0 = Instant::now();
        let mut t = Topic::new(false);
        t.set_session(1, JoinOptions::both());
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        // First announce clears; server+client announces and looks up.
        assert!(p.announce && p.clear && p.lookup && !p.unannounce);
        assert_eq!(
            t.refresh(),
            Step::Running,
            "same mode: join the running refresh"
        );
        assert!(t.handle_done(t0, p.generation, true, J));
        assert_eq!(t.poll_timeout(), Some(t0 + REFRESH_INTERVAL + J));

        // The next announce does not clear.
        let Step::Start(p2) = t.refresh() else {
            panic!()
        };
        assert!(p2.announce && !p2.clear);
        assert!(t.handle_done(t0, p2.generation, true, J));

        // Client only now: a lookup that unannounces, once.
        t.set_session(1, JoinOptions::client());
        let Step::Start(p3) = t.refresh() else {
            panic!()
        };
        assert!(!p3.announce && p3.lookup && p3.unannounce);
        assert!(t.needs_unannounce());
        assert!(t.handle_done(t0, p3.generation, true, J));
        assert!(!t.needs_unannounce());
        let Step::Start(p4) = t.refresh() else {
            panic!()
        };
        assert!(!p4.unannounce);
        assert!(t.handle_done(t0, p4.generation, true, J));
    }

    #[test]
    fn mode_change_supersedes_the_running_refresh() {
        let t0 = Instant::now();
        let mut t = Topic::new(false);
        t.set_session(1, JoinOptions::client());
        let Step::Start(old) = t.refresh() else {
            panic!()
        };
        t.set_session(2, JoinOptions::server());
        let Step::Start(new) = t.refresh() else {
            panic!()
        };
        assert!(new.announce && new.lookup && new.clear);
        assert!(!t.handle_done(t0, old.generation, true, J), "stale");
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_busy());
        assert!(t.handle_done(t0, new.generation, false, J));
        assert!(!t.is_busy());
        assert!(
            t.poll_timeout().is_some(),
            "retried later even after a failure"
        );
        assert_eq!(t.remove_session(2), 1);
        assert_eq!(t.wanted(), JoinOptions::client());
    }

    #[test]
    fn refresh_timer_and_sleep_detection() {
        let t0 = Instant::now();
        let mut t = Topic::new(false);
        t.set_session(1, JoinOptions::client());
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        t.handle_done(t0, p.generation, true, J);
        let due = t0 + REFRESH_INTERVAL + J;
        assert!(!t.handle_timeout(due - Duration::from_millis(1), J));
        assert!(
            t.handle_timeout(due + DELAY_GRACE_PERIOD, J),
            "late, within grace"
        );
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        t.handle_done(t0, p.generation, true, J);
        // Fired far too late (the machine slept): eager refresh after the jitter only.
        let late = due + DELAY_GRACE_PERIOD + Duration::from_secs(1);
        assert!(!t.handle_timeout(late, J));
        assert_eq!(t.poll_timeout(), Some(late + J));
        assert!(t.handle_timeout(late + J, J));
    }

    #[test]
    fn deferred_until_the_previous_instance_left() {
        let t0 = Instant::now();
        let mut t = Topic::new(true);
        t.set_session(1, JoinOptions::server());
        assert_eq!(t.refresh(), Step::Deferred);
        assert!(t.is_busy());
        let p = t.undefer().unwrap();
        assert!(p.announce && p.clear);
        t.handle_done(t0, p.generation, true, J);
        assert!(t.needs_unannounce());
        t.destroy();
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.undefer(), None);
        let mut never_asked = Topic::new(true);
        assert_eq!(never_asked.undefer(), None);
    }
}
