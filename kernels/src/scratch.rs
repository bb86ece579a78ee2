//! Scratch buffers kept per thread from one kernel call to the next.
//!
//! A convolution's scratch (im2col's column matrices, Winograd's transformed inputs and
//! products) is a few MiB, allocated and zero-filled on every call when it is a fresh `Vec`
//! (`resize`), though the kernel then writes every value it reads. Kept per thread and only
//! grown, it is zero-filled once ([`grown`]).
//!
//! [`take`] hands out the value this thread kept of a type (or a default one) and takes it
//! out: a call nested in this one on the same thread (rayon runs other jobs while a thread
//! waits for its own) starts from its own value instead of sharing one. [`put_back`] keeps it
//! for the thread's next call, unless it is larger than [`KEPT_BYTES`]. What is kept stays
//! until the thread ends (the rayon pool's threads: the process).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

/// Buffers larger than this (in bytes) are dropped rather than kept.
pub(crate) const KEPT_BYTES: usize = 16 << 20;

thread_local! {
    static KEPT: RefCell<HashMap<TypeId, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// This thread's kept value of type `S`, taken out, or `S::default()`.
pub(crate) fn take<S: Default + 'static>() -> S {
    KEPT.with(|kept| kept.borrow_mut().remove(&TypeId::of::<S>()))
        .and_then(|b| b.downcast::<S>().ok())
        .map_or_else(S::default, |b| *b)
}

/// Keeps `value` (`bytes` large) for this thread's next [`take`] of its type.
pub(crate) fn put_back<S: 'static>(value: S, bytes: usize) {
    if bytes <= KEPT_BYTES {
        KEPT.with(|kept| kept.borrow_mut().insert(TypeId::of::<S>(), Box::new(value)));
    }
}

/// The first `len` values of `buffer`, grown (zero-filled) to at least `len` first, never
/// shrunk: for buffers whose users write every value before reading it.
pub(crate) fn grown<T: Copy + Default>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    if buffer.len() < len {
        buffer.resize(len, T::default());
    }
    &mut buffer[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_hands_out_what_was_put_back_once() {
        let v: Vec<f32> = vec![1.0, 2.0];
        put_back(v, 8);
        assert_eq!(take::<Vec<f32>>(), vec![1.0, 2.0]);
        assert!(take::<Vec<f32>>().is_empty(), "taken out");
        put_back(vec![0.0f64; 4], KEPT_BYTES + 1);
        assert!(take::<Vec<f64>>().is_empty(), "too large to keep");
    }

    #[test]
    fn grown_only_grows() {
        let mut b = vec![7.0f32; 3];
        assert_eq!(grown(&mut b, 2), &[7.0, 7.0]);
        assert_eq!(b.len(), 3);
        assert_eq!(grown(&mut b, 5), &[7.0, 7.0, 7.0, 0.0, 0.0]);
    }
}
