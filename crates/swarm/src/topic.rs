//! One joined topic (hyperswarm `lib/peer-discovery.js`): its sessions, whether it announces
//! and/or looks up, and when it refreshes. Pure: the driver runs the DHT operations a
//! [`Plan`] asks for and reports back with [`Topic::handle_done`]; time comes in as `now`,
//! randomness as a jitter argument.
//!
//! Ours on top of JS: a client topic whose lookup found no one can be looked up again sooner
//! than the next refresh ([`EmptyLookupRetry`]: a lookup-only plan, the delay doubling up to a
//! cap), and [`Topic::lookup_now`] runs such a lookup at once (after something changed that
//! may let earlier failed dials succeed, e.g. a new blind relay).

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
    /// Run this topic's refreshes before those of other topics when more are due than
    /// [`Config::max_refreshes`](crate::Config::max_refreshes) allows at once (ours; default
    /// false). A topic is prioritized once any of its sessions asked for it.
    pub priority: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            server: true,
            client: true,
            priority: false,
        }
    }
}

impl JoinOptions {
    /// Announce only.
    pub fn server() -> Self {
        Self {
            client: false,
            ..Self::default()
        }
    }

    /// Look up only.
    pub fn client() -> Self {
        Self {
            server: false,
            ..Self::default()
        }
    }

    /// Both (the default).
    pub fn both() -> Self {
        Self::default()
    }

    /// `server` and `client` as given (at least one should be true).
    pub fn new(server: bool, client: bool) -> Self {
        Self {
            server,
            client,
            priority: false,
        }
    }

    /// Set [`JoinOptions::priority`].
    pub fn with_priority(mut self, priority: bool) -> Self {
        self.priority = priority;
        self
    }

    /// The mode alone (what decides a refresh's walks).
    fn mode(self) -> Self {
        Self::new(self.server, self.client)
    }
}

/// Look a client topic up again sooner than the next refresh while its lookups find no one
/// (ours; JS waits for the next refresh, 10–12 minutes): first after `min`, then twice as long
/// each time up to `max`. A lookup that finds a peer stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmptyLookupRetry {
    /// The first delay.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
}

impl EmptyLookupRetry {
    /// Retry after `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
        }
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
    /// A lookup-only retry ([`Topic::lookup_now`]), not a refresh.
    pub(crate) retry: bool,
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

/// Which timer of a topic fired ([`Topic::handle_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing to do now.
    Nothing,
    /// The periodic refresh: call [`Topic::refresh`].
    Refresh,
    /// The retry of an empty lookup: call [`Topic::lookup_now`].
    Lookup,
}

/// JS `PeerDiscovery`.
#[derive(Debug)]
pub(crate) struct Topic {
    sessions: BTreeMap<u64, JoinOptions>,
    /// Mode of the latest refresh (JS `isServer` / `isClient`).
    mode: JoinOptions,
    generations: u64,
    /// The latest refresh while it runs.
    running: Option<Plan>,
    first_announce: bool,
    needs_unannounce: bool,
    /// An announce of this topic succeeded at least once.
    announced: bool,
    timer: Option<Timer>,
    /// Looking up again because the last lookup found no one: when, and the delay after it.
    retry: Option<(Instant, Duration)>,
    retry_policy: Option<EmptyLookupRetry>,
    retry_delay: Duration,
    /// Waiting for the previous instance to finish leaving; `true` in the tuple when a refresh
    /// was asked for meanwhile.
    deferred: Option<bool>,
    destroyed: bool,
}

impl Topic {
    /// A new topic; `wait` when a previous instance of it is still leaving.
    pub(crate) fn new(wait: bool, retry_policy: Option<EmptyLookupRetry>) -> Self {
        Self {
            sessions: BTreeMap::new(),
            mode: JoinOptions::new(false, false),
            generations: 0,
            running: None,
            first_announce: true,
            needs_unannounce: false,
            announced: false,
            timer: None,
            retry: None,
            retry_policy,
            retry_delay: retry_policy.map_or(Duration::ZERO, |p| p.min),
            deferred: wait.then_some(false),
            destroyed: false,
        }
    }

    /// Whether an announce of this topic succeeded at least once.
    pub(crate) fn announced(&self) -> bool {
        self.announced
    }

    /// Whether any session asked for priority.
    pub(crate) fn priority(&self) -> bool {
        self.sessions.values().any(|s| s.priority)
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
        JoinOptions::new(
            self.sessions.values().any(|s| s.server),
            self.sessions.values().any(|s| s.client),
        )
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
    /// refresh in the old mode keeps running, its result is ignored). A lookup-only retry
    /// running is superseded too (its walk does not announce).
    pub(crate) fn refresh(&mut self) -> Step {
        let want = self.wanted().mode();
        if let Some(asked) = &mut self.deferred {
            *asked = true;
            self.mode = want;
            return Step::Deferred;
        }
        let running_full = self.running.is_some_and(|p| !p.retry || !want.server);
        if want == self.mode && running_full {
            return Step::Running;
        }
        self.mode = want;
        Step::Start(self.start())
    }

    /// Look the topic up now, without announcing (ours): a client topic whose lookups found
    /// no one, or after something changed that may let failed dials succeed. Joins a running
    /// refresh; `None` when the topic is not a client (or is leaving or deferred).
    pub(crate) fn lookup_now(&mut self) -> Option<Step> {
        if self.destroyed || self.deferred.is_some() || !self.mode.client {
            return None;
        }
        self.retry = None;
        if self.running.is_some() {
            return Some(Step::Running);
        }
        self.generations += 1;
        let plan = Plan {
            generation: self.generations,
            announce: false,
            clear: false,
            lookup: true,
            unannounce: false,
            retry: true,
        };
        self.running = Some(plan);
        Some(Step::Start(plan))
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
        let plan = Plan {
            generation: self.generations,
            announce: server,
            clear,
            lookup: self.mode.client,
            unannounce,
            retry: false,
        };
        self.running = Some(plan);
        plan
    }

    /// Whether `generation` is the refresh whose result counts.
    pub(crate) fn is_latest(&self, generation: u64) -> bool {
        self.running.is_some_and(|p| p.generation == generation)
    }

    /// A refresh finished; `found`: its lookup found a peer. Returns true when it was the
    /// latest (its peers count, and flushes waiting on the topic resolve); then the next
    /// refresh is planned `REFRESH_INTERVAL + jitter` later (JS `_refreshLater(false)`),
    /// whether it succeeded or not, and an empty lookup is retried sooner if the policy says
    /// so. A lookup-only retry leaves the refresh timer as it was.
    pub(crate) fn handle_done(
        &mut self,
        now: Instant,
        generation: u64,
        ok: bool,
        found: bool,
        jitter: Duration,
    ) -> bool {
        let Some(plan) = self.running else {
            return false;
        };
        if plan.generation != generation {
            return false;
        }
        self.running = None;
        if !self.destroyed && (!plan.retry || self.timer.is_none()) {
            self.schedule(now, REFRESH_INTERVAL + jitter);
        }
        if ok && plan.announce {
            self.announced = true;
        }
        if ok && plan.unannounce {
            // The unannounce that came with this lookup is done.
            self.needs_unannounce = false;
        }
        if plan.lookup {
            match self.retry_policy {
                Some(p) if !found && !self.destroyed && self.mode.client => {
                    self.retry = Some((now + self.retry_delay, self.retry_delay));
                    self.retry_delay = (self.retry_delay * 2).min(p.max);
                }
                Some(p) => {
                    self.retry = None;
                    self.retry_delay = p.min;
                }
                None => {}
            }
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
        let retry = self.retry.map(|(at, _)| at);
        self.timer.map(|t| t.due).into_iter().chain(retry).min()
    }

    /// The timers: [`Due::Refresh`] when a refresh should start now, [`Due::Lookup`] when an
    /// empty lookup should be retried. A refresh timer that fired more than
    /// [`DELAY_GRACE_PERIOD`] late re-arms with only the jitter (JS: the laptop slept).
    pub(crate) fn handle_timeout(&mut self, now: Instant, jitter: Duration) -> Due {
        if let Some(t) = self.timer.filter(|t| t.due <= now) {
            self.timer = None;
            if now.saturating_duration_since(t.start) > t.delay + DELAY_GRACE_PERIOD {
                self.schedule(now, jitter);
            } else {
                return Due::Refresh;
            }
        }
        if self.retry.is_some_and(|(at, _)| at <= now) {
            self.retry = None;
            return Due::Lookup;
        }
        Due::Nothing
    }

    /// Leave (JS `_destroy` / `_abort`): no more refreshes. The driver then waits for a
    /// running refresh ([`Topic::is_busy`]) and unannounces if [`Topic::needs_unannounce`].
    pub(crate) fn destroy(&mut self) {
        self.destroyed = true;
        self.timer = None;
        self.retry = None;
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
        let mut t = Topic::new(false, None);
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
        assert!(t.handle_done(t0, p.generation, true, true, J));
        assert_eq!(t.poll_timeout(), Some(t0 + REFRESH_INTERVAL + J));

        // The next announce does not clear.
        let Step::Start(p2) = t.refresh() else {
            panic!()
        };
        assert!(p2.announce && !p2.clear);
        assert!(t.handle_done(t0, p2.generation, true, true, J));

        // Client only now: a lookup that unannounces, once.
        t.set_session(1, JoinOptions::client());
        let Step::Start(p3) = t.refresh() else {
            panic!()
        };
        assert!(!p3.announce && p3.lookup && p3.unannounce);
        assert!(t.needs_unannounce());
        assert!(t.handle_done(t0, p3.generation, true, true, J));
        assert!(!t.needs_unannounce());
        let Step::Start(p4) = t.refresh() else {
            panic!()
        };
        assert!(!p4.unannounce);
        assert!(t.handle_done(t0, p4.generation, true, true, J));
    }

    #[test]
    fn mode_change_supersedes_the_running_refresh() {
        let t0 = Instant::now();
        let mut t = Topic::new(false, None);
        t.set_session(1, JoinOptions::client());
        let Step::Start(old) = t.refresh() else {
            panic!()
        };
        t.set_session(2, JoinOptions::server());
        let Step::Start(new) = t.refresh() else {
            panic!()
        };
        assert!(new.announce && new.lookup && new.clear);
        assert!(!t.handle_done(t0, old.generation, true, true, J), "stale");
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_busy());
        assert!(t.handle_done(t0, new.generation, false, true, J));
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
        let mut t = Topic::new(false, None);
        t.set_session(1, JoinOptions::client());
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        t.handle_done(t0, p.generation, true, true, J);
        let due = t0 + REFRESH_INTERVAL + J;
        assert_eq!(
            t.handle_timeout(due - Duration::from_millis(1), J),
            Due::Nothing
        );
        assert_eq!(
            t.handle_timeout(due + DELAY_GRACE_PERIOD, J),
            Due::Refresh,
            "late, within grace"
        );
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        t.handle_done(t0, p.generation, true, true, J);
        // Fired far too late (the machine slept): eager refresh after the jitter only.
        let late = due + DELAY_GRACE_PERIOD + Duration::from_secs(1);
        assert_eq!(t.handle_timeout(late, J), Due::Nothing);
        assert_eq!(t.poll_timeout(), Some(late + J));
        assert_eq!(t.handle_timeout(late + J, J), Due::Refresh);
    }

    #[test]
    fn deferred_until_the_previous_instance_left() {
        let t0 = Instant::now();
        let mut t = Topic::new(true, None);
        t.set_session(1, JoinOptions::server());
        assert_eq!(t.refresh(), Step::Deferred);
        assert!(t.is_busy());
        let p = t.undefer().unwrap();
        assert!(p.announce && p.clear);
        t.handle_done(t0, p.generation, true, true, J);
        assert!(t.needs_unannounce());
        t.destroy();
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.undefer(), None);
        let mut never_asked = Topic::new(true, None);
        assert_eq!(never_asked.undefer(), None);
    }

    #[test]
    fn empty_lookups_are_retried_sooner_without_announcing() {
        let t0 = Instant::now();
        let policy = EmptyLookupRetry::new(Duration::from_secs(1), Duration::from_secs(4));
        let mut t = Topic::new(false, Some(policy));
        t.set_session(1, JoinOptions::both().with_priority(true));
        assert!(t.priority());
        let Step::Start(p) = t.refresh() else {
            panic!()
        };
        assert!(p.announce && p.lookup && !p.retry);
        // Announced, but the lookup found no one: looked up again after 1 s, 2 s, 4 s, 4 s.
        assert!(t.handle_done(t0, p.generation, true, false, J));
        assert!(t.announced());
        let refresh_due = t0 + REFRESH_INTERVAL + J;
        let mut now = t0;
        for delay in [1, 2, 4, 4] {
            let at = now + Duration::from_secs(delay);
            assert_eq!(t.poll_timeout(), Some(at));
            assert_eq!(
                t.handle_timeout(at - Duration::from_millis(1), J),
                Due::Nothing
            );
            assert_eq!(t.handle_timeout(at, J), Due::Lookup);
            let Some(Step::Start(r)) = t.lookup_now() else {
                panic!()
            };
            assert!(r.retry && r.lookup && !r.announce && !r.unannounce);
            // A refresh asked for meanwhile supersedes the retry: it must announce.
            now = at;
            assert!(t.handle_done(now, r.generation, true, false, J));
        }
        // The periodic refresh was not moved by the retries.
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(4)));
        // A lookup that finds someone ends the retries; the refresh timer is still JS's.
        let Some(Step::Start(r)) = t.lookup_now() else {
            panic!()
        };
        assert!(t.handle_done(now, r.generation, true, true, J));
        assert_eq!(t.poll_timeout(), Some(refresh_due));
        // A retry running does not stand in for a refresh of a server topic.
        let Some(Step::Start(r)) = t.lookup_now() else {
            panic!()
        };
        let Step::Start(full) = t.refresh() else {
            panic!("a refresh must announce")
        };
        assert!(full.announce);
        assert!(!t.handle_done(now, r.generation, true, true, J), "stale");
        // A server-only topic is never looked up.
        let mut s = Topic::new(false, Some(policy));
        s.set_session(1, JoinOptions::server());
        let Step::Start(p) = s.refresh() else {
            panic!()
        };
        assert!(s.handle_done(t0, p.generation, true, false, J));
        assert_eq!(s.lookup_now(), None);
        assert_eq!(s.poll_timeout(), Some(t0 + REFRESH_INTERVAL + J));
    }
}
