//! Resend dedup: the probe resends unacknowledged events after a reconnect,
//! so event ids already written (or being written) are remembered, within a
//! bound, oldest forgotten first.

use std::collections::{HashMap, VecDeque};

use crate::limits;

/// Event ids already written (or being written), for resend dedup; oldest
/// forgotten first.
#[derive(Default)]
pub(super) struct Remembered {
    map: HashMap<(String, String), Slot>,
    order: VecDeque<(String, String)>,
}

#[derive(Clone, Copy)]
pub(super) enum Slot {
    InFlight,
    Written { seq: u64, t_ns: i64 },
}

impl Remembered {
    pub(super) fn get(&self, key: &(String, String)) -> Option<Slot> {
        self.map.get(key).copied()
    }

    pub(super) fn insert(&mut self, key: (String, String), slot: Slot) {
        if self.map.insert(key.clone(), slot).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > limits::MAX_REMEMBERED_IDS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&old);
        }
        // Entries of removed ids linger in the queue; drop them now and then.
        if self.order.len() > 2 * limits::MAX_REMEMBERED_IDS {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    pub(super) fn remove(&mut self, key: &(String, String)) {
        // The order entry stays until it is popped or compacted away.
        self.map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebSocket event ids were remembered without bound (and the old bound
    /// forgot every id at once when it was hit).
    #[test]
    fn remembered_ids_are_bounded_and_forgotten_oldest_first() {
        let mut r = Remembered::default();
        let key = |i: usize| ("tab".to_string(), i.to_string());
        for i in 0..limits::MAX_REMEMBERED_IDS + 10 {
            r.insert(
                key(i),
                Slot::Written {
                    seq: i as u64,
                    t_ns: 0,
                },
            );
        }
        assert_eq!(r.map.len(), limits::MAX_REMEMBERED_IDS);
        assert!(r.get(&key(9)).is_none());
        assert!(r.get(&key(10)).is_some());
        assert!(r.get(&key(limits::MAX_REMEMBERED_IDS + 9)).is_some());
        // Removed entries leave the order queue as it drains, so it stays bounded.
        for i in 0..limits::MAX_REMEMBERED_IDS * 3 {
            r.insert(key(1_000_000 + i), Slot::InFlight);
            r.remove(&key(1_000_000 + i));
        }
        assert!(r.order.len() <= 2 * limits::MAX_REMEMBERED_IDS + 1);
    }
}
