//! Where a worker keeps its connections, and how a token finds one.
//!
//! A token is a slot's index and the slot's *generation*: how many times the
//! slot has been emptied. Emptying a slot bumps its generation, so a token
//! kept from before (in the ready list, or in a batch of events) no longer
//! matches, even when a new connection fills the same slot, or its socket
//! gets the very fd number the old one had.

use crate::Token;

// ANCHOR: token_bits
/// The low half of a token is the slot's index, the high half its
/// generation. The highest index is never handed out, so that no slab token
/// is ever `Token(usize::MAX)`, which the program keeps for its waker.
const INDEX_BITS: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

fn token(index: usize, generation: usize) -> Token {
    Token(generation << INDEX_BITS | index)
}

fn split(token: Token) -> (usize, usize) {
    (token.0 & INDEX_MASK, token.0 >> INDEX_BITS)
}
// ANCHOR_END: token_bits

// ANCHOR: slab
/// Values in numbered slots that are reused, each reached only through the
/// token it was given.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, reused last-freed first.
    free: Vec<usize>,
}

#[derive(Debug)]
struct Slot<T> {
    generation: usize,
    entry: Entry<T>,
}

#[derive(Debug)]
enum Entry<T> {
    Vacant,
    Occupied(T),
    /// The value is gone, but the slot is not yet free: something may still
    /// hold its token. [`Slab::release`] frees it.
    Removed,
}
// ANCHOR_END: slab

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab::default()
    }

    // ANCHOR: insert
    /// Stores `value` and returns its token; `None` if every index that a
    /// token can carry is taken.
    pub fn insert(&mut self, value: T) -> Option<Token> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < INDEX_MASK => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: Entry::Vacant,
                });
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[index];
        slot.entry = Entry::Occupied(value);
        Some(token(index, slot.generation))
    }
    // ANCHOR_END: insert

    // ANCHOR: get
    /// The value `token` was given for, if it is still here. A token from an
    /// earlier generation of the slot finds nothing.
    pub fn get(&self, token: Token) -> Option<&T> {
        let (index, generation) = split(token);
        match self.slots.get(index) {
            Some(Slot {
                generation: current,
                entry: Entry::Occupied(value),
            }) if *current == generation => Some(value),
            _ => None,
        }
    }
    // ANCHOR_END: get

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let (index, generation) = split(token);
        match self.slots.get_mut(index) {
            Some(Slot {
                generation: current,
                entry: Entry::Occupied(value),
            }) if *current == generation => Some(value),
            _ => None,
        }
    }

    // ANCHOR: remove
    /// Takes the value out and marks the slot removed. The slot is not
    /// reused until [`release`](Slab::release): a removed slot answers no
    /// token, old or new.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.get(token)?;
        let slot = &mut self.slots[split(token).0];
        match std::mem::replace(&mut slot.entry, Entry::Removed) {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant | Entry::Removed => unreachable!("get found a value"),
        }
    }

    /// Frees a removed slot for reuse, under a new generation. Call it only
    /// once nothing can still be holding `token` for use.
    pub fn release(&mut self, token: Token) {
        let (index, generation) = split(token);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.generation == generation && matches!(slot.entry, Entry::Removed) {
            slot.entry = Entry::Vacant;
            slot.generation = (generation + 1) & (usize::MAX >> INDEX_BITS);
            self.free.push(index);
        }
    }
    // ANCHOR_END: remove

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| matches!(slot.entry, Entry::Occupied(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored value.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| match &slot.entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant | Entry::Removed => None,
        })
    }

    /// The slot index a token names, whatever its generation: what a naive
    /// table keyed by index alone would look up.
    pub fn index_of(token: Token) -> usize {
        split(token).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_the_old_token() {
        let mut slab = Slab::new();
        let old = slab.insert("old").unwrap();
        assert_eq!(slab.remove(old), Some("old"));
        // Removed but not released: the slot is not reused yet.
        let other = slab.insert("other").unwrap();
        assert_ne!(Slab::<&str>::index_of(other), Slab::<&str>::index_of(old));
        slab.release(old);
        let new = slab.insert("new").unwrap();
        assert_eq!(Slab::<&str>::index_of(new), Slab::<&str>::index_of(old));
        assert_ne!(new, old);
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get(new), Some(&"new"));
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn the_wakers_token_names_an_index_never_handed_out() {
        assert_eq!(split(Token(usize::MAX)).0, INDEX_MASK);
    }

    #[test]
    fn generations_wrap_within_their_half() {
        let mut slab = Slab::new();
        let first = slab.insert(1).unwrap();
        slab.slots[0].generation = usize::MAX >> INDEX_BITS;
        let last = token(0, usize::MAX >> INDEX_BITS);
        slab.remove(last);
        slab.release(last);
        let wrapped = slab.insert(2).unwrap();
        assert_eq!(wrapped, first);
        assert_eq!(slab.get(wrapped), Some(&2));
    }
}
