//! Single-threaded rendezvous used inside one shard: a one-shot [`Slot`] that a connection task
//! awaits while the mesh receiver fills it, and a [`Countdown`] of acknowledgements. Both are
//! `Rc`-based on purpose — they never cross a thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A value delivered once, awaited once.
#[derive(Debug)]
pub struct Slot<T> {
    value: RefCell<Option<T>>,
    waker: RefCell<Option<Waker>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            value: RefCell::new(None),
            waker: RefCell::new(None),
        })
    }

    /// Fills the slot and wakes the waiter.
    pub fn fill(&self, value: T) {
        *self.value.borrow_mut() = Some(value);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits for the value.
    pub fn wait(self: &Rc<Self>) -> SlotWait<T> {
        SlotWait(Rc::clone(self))
    }
}

/// Future of [`Slot::wait`].
#[derive(Debug)]
pub struct SlotWait<T>(Rc<Slot<T>>);

impl<T> Future for SlotWait<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = self.0.value.borrow_mut().take() {
            return Poll::Ready(value);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Counts down acknowledgements; ready at zero.
#[derive(Debug)]
pub struct Countdown {
    remaining: Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

impl Countdown {
    /// A countdown from `n`.
    pub fn new(n: usize) -> Rc<Self> {
        Rc::new(Self {
            remaining: Cell::new(n),
            waker: RefCell::new(None),
        })
    }

    /// One more acknowledgement arrived.
    pub fn tick(&self) {
        let left = self.remaining.get().saturating_sub(1);
        self.remaining.set(left);
        if left == 0 {
            if let Some(waker) = self.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Waits until every acknowledgement arrived.
    pub fn wait(self: &Rc<Self>) -> CountdownWait {
        CountdownWait(Rc::clone(self))
    }
}

/// Future of [`Countdown::wait`].
#[derive(Debug)]
pub struct CountdownWait(Rc<Countdown>);

impl Future for CountdownWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.remaining.get() == 0 {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
