//! Where a worker keeps its connections, and how a token finds one.
//!
//! A *slab* is a vector of slots reused in place: a token is a slot's index,
//! so finding a connection from an event is one array lookup. The catch is
//! that a slot is reused: a token kept from before (on the ready list, in a
//! batch of events) would name whatever connection fills the slot next. So
//! emptying a slot takes two steps. [`Slab::remove`] takes the value out and
//! marks the slot *removed*: it answers no token, and it is not reused.
//! [`Slab::release`] frees it for reuse, which the worker does only after
//! the turn, once no token for it is left anywhere: that is the cleanup list.

use crate::poll::Token;

// ANCHOR: slab
/// Values in numbered slots that are reused, each reached through its token.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Slots free for reuse, last-freed first.
    free: Vec<usize>,
    /// How many slots are occupied.
    len: usize,
}

#[derive(Debug)]
enum Slot<T> {
    Vacant,
    Occupied(T),
    /// The value is gone, but a token for the slot may still be about: it
    /// finds nothing, and the slot is not reused until it is released.
    Removed,
}
// ANCHOR_END: slab

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

// ANCHOR: slab_impl
impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab::default()
    }

    /// Stores `value` in a free slot, or a new one, and returns its token.
    /// No slab grows to `usize::MAX` slots, so it never hands out
    /// `Token(usize::MAX)`, which the program keeps for its waker.
    pub fn insert(&mut self, value: T) -> Token {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::Vacant);
            self.slots.len() - 1
        });
        self.slots[index] = Slot::Occupied(value);
        self.len += 1;
        Token(index)
    }

    pub fn get(&self, token: Token) -> Option<&T> {
        match self.slots.get(token.0) {
            Some(Slot::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        match self.slots.get_mut(token.0) {
            Some(Slot::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// Takes the value out and marks the slot removed: it answers no token,
    /// and is not reused until [`release`](Slab::release).
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let slot = self.slots.get_mut(token.0)?;
        match std::mem::replace(slot, Slot::Removed) {
            Slot::Occupied(value) => {
                self.len -= 1;
                Some(value)
            }
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Frees a removed slot for reuse. The caller promises that no token for
    /// it is left: the next value stored there gets the very same token.
    pub fn release(&mut self, token: Token) {
        if let Some(slot @ Slot::Removed) = self.slots.get_mut(token.0) {
            *slot = Slot::Vacant;
            self.free.push(token.0);
        }
    }
}
// ANCHOR_END: slab_impl

impl<T> Slab<T> {
    /// How many values are stored (removed slots do not count).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Occupied(value) => Some(value),
            Slot::Vacant | Slot::Removed => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_slot_answers_no_token_and_is_reused_only_once_released() {
        let mut slab = Slab::new();
        let old = slab.insert("old");
        assert_eq!(slab.remove(old), Some("old"));
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.remove(old), None);
        // Removed but not released: the slot is not reused yet.
        let other = slab.insert("other");
        assert_ne!(other, old);
        slab.release(old);
        let new = slab.insert("new");
        assert_eq!(new, old);
        assert_eq!(slab.get(new), Some(&"new"));
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn releasing_a_slot_that_is_not_removed_does_nothing() {
        let mut slab = Slab::new();
        let kept = slab.insert(1);
        slab.release(kept);
        assert_eq!(slab.get(kept), Some(&1));
        assert_ne!(slab.insert(2), kept);
    }
}
