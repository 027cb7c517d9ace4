//! Per-peer deadlines in a heap: the next timer is found in O(log n) and idle peers cost nothing.
//!
//! The heap only says when to look at which peer. Which deadline is live is the peer's own
//! business: it keeps its deadline under its own lock, and an entry whose time is not the peer's
//! current deadline is stale and skipped (see `Device::poll_transmit`). So a packet that finds
//! its peer already due earlier never touches the heap, and cancelling is clearing the peer's
//! deadline, without the heap.

use crate::device::PeerId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl Timers {
    pub fn push(&mut self, id: PeerId, at: Instant) {
        self.heap.push(Reverse((at, id)));
    }

    /// The next entry due at or before `now`, removed from the heap; it may be stale.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, PeerId)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The earliest deadline; may be a stale one, which only makes the caller wake early.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_due_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        let (a, b) = (PeerId::for_test(1), PeerId::for_test(2));
        t.push(a, ms(30));
        t.push(b, ms(20));
        t.push(a, ms(10));
        assert_eq!(t.next_deadline(), Some(ms(10)));
        assert_eq!(t.pop_due(ms(4)), None);
        assert_eq!(t.pop_due(ms(25)), Some((ms(10), a)));
        assert_eq!(t.pop_due(ms(25)), Some((ms(20), b)));
        assert_eq!(t.pop_due(ms(25)), None, "not yet due");
        assert_eq!(t.pop_due(ms(30)), Some((ms(30), a)));
        assert_eq!(t.next_deadline(), None);
    }
}
