//! Per-peer deadlines in a heap: the next timer is found in O(log n) and idle peers cost nothing.
//!
//! Each scheduled peer has exactly one live deadline (the earliest asked for). Cancelled or
//! superseded heap entries stay behind as stale entries and are skipped when popped, which keeps
//! scheduling O(log n) without a decrease-key operation.

use crate::device::PeerId;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
    live: HashMap<PeerId, Instant>,
}

impl Timers {
    /// Makes sure `id` is woken no later than `at`.
    pub fn schedule(&mut self, id: PeerId, at: Instant) {
        match self.live.get(&id) {
            Some(existing) if *existing <= at => {}
            _ => {
                self.live.insert(id, at);
                self.heap.push(Reverse((at, id)));
            }
        }
    }

    pub fn cancel(&mut self, id: PeerId) {
        self.live.remove(&id);
    }

    /// The next peer whose deadline is at or before `now`, removing its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<PeerId> {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.live.get(&id) == Some(&at) {
                self.live.remove(&id);
                return Some(id);
            }
        }
        None
    }

    /// The earliest deadline; may be a stale one, which only makes the caller wake early.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Peers with a live deadline.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_deadline_wins_and_cancel_skips() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        let (a, b, c) = (
            PeerId::for_test(1),
            PeerId::for_test(2),
            PeerId::for_test(3),
        );
        t.schedule(a, ms(30));
        t.schedule(a, ms(10)); // earlier replaces
        t.schedule(a, ms(50)); // later is ignored
        t.schedule(b, ms(20));
        t.schedule(c, ms(5));
        t.cancel(c);
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(ms(4)), None);
        assert_eq!(t.pop_due(ms(100)), Some(a));
        assert_eq!(t.pop_due(ms(100)), Some(b));
        assert_eq!(
            t.pop_due(ms(100)),
            None,
            "stale entries of a and c are skipped"
        );
        assert_eq!(t.len(), 0);
    }
}
