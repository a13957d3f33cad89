//! An exhaustive explicit-state model of the ring's signalling: a producer (tzcomm's
//! `Port::write_batch` and `Port::write`) and a consumer (comm-pd's `Ports::poll`/`serve`), every
//! interleaving of their shared-memory accesses explored, for small rings and several messages.
//! Both work from cached peer indices as the ring does: read in each batch, then trusted until
//! they say full (empty).
//!
//! Why hand-written, not loom: loom replaces `std::sync::atomic` with its own types, and the ring
//! accesses raw shared memory through `AtomicU32::from_ptr` (the memory belongs to the other
//! world, not to a Rust object), which loom cannot model. The protocol is small enough that a
//! breadth-first search over its states, with a visited set, is a few hundred lines and checks
//! every interleaving, not a sample of them.
//!
//! # What one step is
//! Each step of either side is at most one access to shared memory, in the order the code makes
//! it (each is cited below by the function and line it mirrors): an index store, an index load, a
//! flag load, a flag store, a slot store or load (the message bytes, one slot per message), or the
//! notification (set a pending bit; the sleeping side waits for it). Private computation (the
//! cached indices, counters) happens inside a step. Every interleaving of these steps is one
//! sequentially consistent execution.
//!
//! # Why sequential consistency is enough
//! The accesses whose order matters for wake-ups are the Dekker pairs: `publish` stores the index
//! then loads the flag, `request_signal` stores the flag then loads the index (and the same for
//! space: `request_space_signal` stores its flag then loads the consumer index, `release` stores
//! the index then loads the flag). Each pair is separated by `fence(SeqCst)`, and SeqCst fences are
//! totally ordered: of two such fenced store-then-load sequences, at least one load sees the other
//! side's store (C++ [atomics.fences], which Rust's memory model follows). That is exactly what an
//! interleaving gives, so the model may treat those accesses as interleaved. The remaining
//! accesses are ordered by Release stores of the index and Acquire loads of it (message bytes
//! before the index that covers them; a slot read before the index that frees it). The negative
//! models show what the fences buy: a fence removed is modelled as the load moved before the store
//! (the reordering a store buffer makes, the only one x86 makes), and it loses a wake-up.
//!
//! # What the model does NOT cover
//! - Weak-memory behaviours beyond that argument: it is not a model of the Rust memory model
//!   (no loads of stale values other than through the modelled reorderings).
//! - Message lengths, pads and wrapping of byte offsets (one message is one slot), and every check
//!   of a lying peer: the proptests and comm-pd's fuzz target cover those; here both sides are
//!   honest.
//! - Timeouts: `Port::wait` re-checks the port every 500 ms; the model's sleep is for ever, so a
//!   lost wake-up shows as a stuck state, not as a stall.
//! - More than one port, the feed, the control mailbox, the tx direction (the same `Producer` and
//!   `Consumer` code with the roles swapped), and revocation.

extern crate std;

use std::collections::{HashMap, VecDeque};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

/// The sizes of one model.
#[derive(Debug, Clone, Copy)]
struct Config {
    /// Messages the ring holds.
    capacity: u8,
    /// Messages the producer sends.
    messages: u8,
    /// `write_batch` publishes after this many messages (`PUBLISH_BYTES`).
    publish_every: u8,
    /// The consumer releases after this many messages (`MESSAGES_PER_TURN`).
    per_turn: u8,
    /// The consumer starts asleep (comm-pd waiting for its first kick) or awake.
    consumer_asleep: bool,
}

/// A change to the protocol that must lose a wake-up: proof that the checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    None,
    /// `request_signal` without its re-check of the producer index after clearing the flag.
    NoDataRecheck,
    /// `request_signal` without its fence: the index load moves before the flag store.
    DataFenceRemoved,
    /// `request_signal`'s re-check looks at the cached producer index instead of the shared one
    /// (the fast path applied where it must not be).
    DataRecheckCached,
    /// `publish` without its fence: the flag load moves before the index store.
    PublishFenceRemoved,
    /// `request_space_signal` without its re-check of the consumer index after setting the flag.
    NoSpaceRecheck,
    /// `release` without its fence: the flag load moves before the index store.
    ReleaseFenceRemoved,
}

/// Where the producer is. `then` says where a publish returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Producer {
    /// `Producer::try_send`: room per the cached consumer index? Then the slot store.
    Append,
    /// `try_send`'s `self.free()`: the cache says full, so the consumer index is read again.
    ReloadConsumer,
    /// `Producer::publish`: `store(self.producer, Release)` of the producer index.
    PublishStore(After),
    /// `publish`: `signalled.load(Relaxed)` (after the SeqCst fence).
    PublishFlagLoad(After),
    /// `publish`: `signalled.store(1, Relaxed)`, then the caller kicks.
    PublishFlagStore(After),
    /// `Port::publish_batch`/`Port::send`: `transport.kick`, the consumer's notification.
    Kick(After),
    /// `Port::write`: the ring is full; spin (try `send` again) or ask for room.
    Full,
    /// `Port::try_write`: `transport.clear()`, the doorbell's pending bit consumed.
    Clear,
    /// `request_space_signal`: `PRODUCER_WAITING.store(1, Relaxed)`.
    SpaceFlagSet,
    /// `request_space_signal`: `self.fits(length)` after the fence (the consumer index read again
    /// unless the cache says it fits).
    SpaceRecheck,
    /// `request_space_signal`: `PRODUCER_WAITING.store(0, Relaxed)`: room after all.
    SpaceFlagWithdraw,
    /// `Port::wait`: asleep until the doorbell's bit is set.
    Sleep,
    /// `PublishFenceRemoved`: the flag value loaded before the index store.
    PublishStoreAfterLoad(After, bool),
    Done,
}

/// Where a publish goes on: on appending (batch), to waiting for room, or to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum After {
    Append,
    Full,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Consumer {
    /// `Consumer::peek_into`: data per the cached producer index? Then the slot load.
    Peek,
    /// `peek_into`'s `self.pending()`: the cache says empty, so the producer index is read again.
    ReloadProducer,
    /// `Consumer::release`: `store(self.consumer, Release)` of the consumer index.
    ReleaseStore(Turn),
    /// `release`: `waiting.load(Relaxed)` after the SeqCst fence.
    ReleaseFlagLoad(Turn),
    /// `release`: `waiting.store(0, Relaxed)`; the doorbell is owed (`turn.doorbell`).
    ReleaseFlagStore(Turn),
    /// `Ports::poll` after a drained turn: ring an owed doorbell (`services.ring_doorbell()`
    /// before spinning, or the `Poll::doorbell` the handler rings), then spin or ask.
    AfterTurn,
    /// `Ports::spin`: `rx.pending()`, the producer index read.
    SpinLook,
    /// `Consumer::request_signal`: `SIGNALLED.store(0, Relaxed)`.
    SignalClear,
    /// `request_signal`: `self.pending()` after the fence.
    SignalRecheck,
    /// `request_signal`: `SIGNALLED.store(1, Relaxed)`: data arrived, go on consuming.
    SignalRestore,
    /// The PD's event loop: asleep until a notification, which waking consumes (seL4_Wait).
    Sleep,
    /// `DataFenceRemoved`: the producer index loaded before the flag store.
    SignalClearAfterLoad(bool),
    /// `ReleaseFenceRemoved`: the flag loaded before the index store.
    ReleaseStoreAfterLoad(Turn, bool),
}

/// Where a release goes on: the turn was full (serve again) or drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Turn {
    Full,
    Drained,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    // Shared memory.
    producer_index: u8,
    consumer_index: u8,
    consumer_signalled: bool,
    producer_waiting: bool,
    /// The message number in each slot (`u8::MAX`: never written).
    slots: Vec<u8>,
    /// Notifications pending: the consumer's (kick) and the producer's (doorbell).
    kick_pending: bool,
    doorbell_pending: bool,
    // The producer's private memory.
    producer: Producer,
    produced: u8,
    published: u8,
    consumer_cached: u8,
    /// `Producer::cached`: the consumer index was read since the last `publish`.
    consumer_cache_valid: bool,
    unpublished: u8,
    /// Inside `Port::write` (one message, published at once) rather than batching.
    one_message: bool,
    // The consumer's private memory.
    consumer: Consumer,
    consumed: u8,
    producer_cached: u8,
    /// `Consumer::cached`: the producer index was read since the last `release`.
    producer_cache_valid: bool,
    taken: u8,
    doorbell_owed: bool,
}

impl State {
    fn initial(config: &Config) -> Self {
        State {
            producer_index: 0,
            consumer_index: 0,
            consumer_signalled: false,
            producer_waiting: false,
            slots: vec![u8::MAX; usize::from(config.capacity)],
            kick_pending: false,
            doorbell_pending: false,
            producer: Producer::Append,
            produced: 0,
            published: 0,
            consumer_cached: 0,
            consumer_cache_valid: false,
            unpublished: 0,
            one_message: false,
            consumer: if config.consumer_asleep { Consumer::Sleep } else { Consumer::Peek },
            consumed: 0,
            producer_cached: 0,
            producer_cache_valid: false,
            taken: 0,
            doorbell_owed: false,
        }
    }

    fn done(&self, config: &Config) -> bool {
        self.producer == Producer::Done && self.consumed == config.messages && self.consumer == Consumer::Sleep
    }
}

/// A step that breaks an invariant on its own (a message read before it was written, or
/// overwritten before it was read).
type Broken = String;

/// Every successor of `s`: one step of the producer or one of the consumer (the choices of
/// spinning give more than one).
fn successors(s: &State, config: &Config, mutation: Mutation) -> Result<Vec<State>, Broken> {
    let mut next = Vec::new();
    producer_steps(s, config, mutation, &mut next);
    consumer_steps(s, config, mutation, &mut next)?;
    Ok(next)
}

fn producer_steps(s: &State, config: &Config, mutation: Mutation, next: &mut Vec<State>) {
    let capacity = config.capacity;
    let mut t = s.clone();
    match s.producer {
        Producer::Done => return,
        Producer::Append => {
            if s.produced == config.messages {
                // `write_batch`'s final `publish_batch`.
                t.producer = Producer::PublishStore(After::Done);
            } else if s.consumer_cache_valid && s.produced - s.consumer_cached < capacity {
                // `try_send`: the slot store (`self.shared.write`), the producer index private.
                t.slots[usize::from(s.produced % capacity)] = s.produced;
                t.produced += 1;
                t.unpublished += 1;
                // `Port::send` publishes each message of `write`; `append_all` every
                // `PUBLISH_BYTES`; the last one at the end of the batch (`Append` again).
                t.producer = if s.one_message || t.unpublished >= config.publish_every {
                    t.one_message = false;
                    t.unpublished = 0;
                    Producer::PublishStore(After::Append)
                } else {
                    Producer::Append
                };
            } else {
                t.producer = Producer::ReloadConsumer;
            }
        }
        Producer::ReloadConsumer => {
            // `Producer::consumer`: `word(CONSUMER_OFFSET).load(Acquire)`, checked, cached.
            t.consumer_cached = s.consumer_index;
            t.consumer_cache_valid = true;
            t.producer = if s.produced - t.consumer_cached < capacity {
                Producer::Append
            } else if s.one_message {
                Producer::Full
            } else {
                // `append_all` on `SendError::Full`: `publish_batch`, then `write(message)`.
                t.unpublished = 0;
                t.one_message = true;
                Producer::PublishStore(After::Full)
            };
        }
        Producer::PublishStore(then) => {
            // `publish`: `self.cached = false` (the next batch reads the consumer index first).
            t.consumer_cache_valid = false;
            if s.published == s.produced {
                // `publish`: `if self.published == self.producer { return false }`.
                t.producer = after(then);
            } else if mutation == Mutation::PublishFenceRemoved {
                t.producer = Producer::PublishStoreAfterLoad(then, s.consumer_signalled);
            } else {
                t.producer_index = s.produced;
                t.published = s.produced;
                t.producer = Producer::PublishFlagLoad(then);
            }
        }
        Producer::PublishStoreAfterLoad(then, signalled) => {
            t.producer_index = s.produced;
            t.published = s.produced;
            t.producer = if signalled { after(then) } else { Producer::PublishFlagStore(then) };
        }
        Producer::PublishFlagLoad(then) => {
            t.producer = if s.consumer_signalled { after(then) } else { Producer::PublishFlagStore(then) };
        }
        Producer::PublishFlagStore(then) => {
            t.consumer_signalled = true;
            t.producer = Producer::Kick(then);
        }
        Producer::Kick(then) => {
            t.kick_pending = true;
            t.producer = after(then);
        }
        Producer::Full => {
            // `Port::write`: `spinning` (send again) or `try_write` (ask for room).
            let mut spin = s.clone();
            spin.producer = Producer::Append;
            next.push(spin);
            t.producer = Producer::Clear;
        }
        Producer::Clear => {
            t.doorbell_pending = false;
            t.producer = Producer::SpaceFlagSet;
        }
        Producer::SpaceFlagSet => {
            t.producer_waiting = true;
            t.producer = if mutation == Mutation::NoSpaceRecheck { Producer::Sleep } else { Producer::SpaceRecheck };
        }
        Producer::SpaceRecheck => {
            // `fits`: the cache first (if read in this batch), else the shared index.
            if !s.consumer_cache_valid || s.produced - s.consumer_cached >= capacity {
                t.consumer_cached = s.consumer_index;
                t.consumer_cache_valid = true;
            }
            t.producer =
                if s.produced - t.consumer_cached < capacity { Producer::SpaceFlagWithdraw } else { Producer::Sleep };
        }
        Producer::SpaceFlagWithdraw => {
            t.producer_waiting = false;
            // `try_write` loops: `send` again.
            t.producer = Producer::Append;
        }
        Producer::Sleep => {
            if !s.doorbell_pending {
                return;
            }
            // `transport.wait` returns; the bit stays until the next `clear`. `write` sends again.
            t.producer = Producer::Append;
        }
    }
    next.push(t);
}

fn after(then: After) -> Producer {
    match then {
        After::Append => Producer::Append,
        After::Full => Producer::Full,
        After::Done => Producer::Done,
    }
}

fn consumer_steps(s: &State, config: &Config, mutation: Mutation, next: &mut Vec<State>) -> Result<(), Broken> {
    let capacity = config.capacity;
    let mut t = s.clone();
    match s.consumer {
        Consumer::Peek => {
            if s.producer_cache_valid && s.producer_cached != s.consumed {
                // `peek_into`: the record read (`read_header`/`read`), then `consume`.
                let slot = s.slots[usize::from(s.consumed % capacity)];
                if slot != s.consumed {
                    return Err(format!("the consumer read slot {slot} for message {}", s.consumed));
                }
                t.consumed += 1;
                t.taken += 1;
                t.consumer =
                    if t.taken == config.per_turn { Consumer::ReleaseStore(Turn::Full) } else { Consumer::Peek };
            } else {
                t.consumer = Consumer::ReloadProducer;
            }
        }
        Consumer::ReloadProducer => {
            // `Consumer::producer`: `word(PRODUCER_OFFSET).load(Acquire)`, checked, cached.
            t.producer_cached = s.producer_index;
            t.producer_cache_valid = true;
            t.consumer =
                if t.producer_cached != s.consumed { Consumer::Peek } else { Consumer::ReleaseStore(Turn::Drained) };
        }
        Consumer::ReleaseStore(turn) => {
            // `release`: `self.cached = false`, then the store.
            t.taken = 0;
            t.producer_cache_valid = false;
            if mutation == Mutation::ReleaseFenceRemoved {
                t.consumer = Consumer::ReleaseStoreAfterLoad(turn, s.producer_waiting);
            } else {
                t.consumer_index = s.consumed;
                t.consumer = Consumer::ReleaseFlagLoad(turn);
            }
        }
        Consumer::ReleaseStoreAfterLoad(turn, waiting) => {
            t.consumer_index = s.consumed;
            t.consumer = if waiting { Consumer::ReleaseFlagStore(turn) } else { after_turn(turn) };
        }
        Consumer::ReleaseFlagLoad(turn) => {
            t.consumer = if s.producer_waiting { Consumer::ReleaseFlagStore(turn) } else { after_turn(turn) };
        }
        Consumer::ReleaseFlagStore(turn) => {
            t.producer_waiting = false;
            t.doorbell_owed = true;
            t.consumer = after_turn(turn);
        }
        Consumer::AfterTurn => {
            if s.doorbell_owed {
                t.doorbell_pending = true;
                t.doorbell_owed = false;
            } else {
                // `Ports::spin` (look again) or its window over: ask for a kick.
                let mut spin = s.clone();
                spin.consumer = Consumer::SpinLook;
                next.push(spin);
                t.consumer = Consumer::SignalClear;
            }
        }
        Consumer::SpinLook => {
            t.producer_cached = s.producer_index;
            t.producer_cache_valid = true;
            t.consumer = if t.producer_cached != s.consumed { Consumer::Peek } else { Consumer::AfterTurn };
        }
        Consumer::SignalClear => match mutation {
            Mutation::DataFenceRemoved => {
                t.consumer = Consumer::SignalClearAfterLoad(s.producer_index != s.consumed);
                t.producer_cached = s.producer_index;
                t.producer_cache_valid = true;
            }
            _ => {
                t.consumer_signalled = false;
                t.consumer =
                    if mutation == Mutation::NoDataRecheck { Consumer::Sleep } else { Consumer::SignalRecheck };
            }
        },
        Consumer::SignalClearAfterLoad(arrived) => {
            t.consumer_signalled = false;
            t.consumer = if arrived { Consumer::SignalRestore } else { Consumer::Sleep };
        }
        Consumer::SignalRecheck => {
            if mutation != Mutation::DataRecheckCached {
                // `self.pending()`: always the shared index.
                t.producer_cached = s.producer_index;
                t.producer_cache_valid = true;
            }
            t.consumer = if t.producer_cached != s.consumed { Consumer::SignalRestore } else { Consumer::Sleep };
        }
        Consumer::SignalRestore => {
            t.consumer_signalled = true;
            t.consumer = Consumer::Peek;
        }
        Consumer::Sleep => {
            if !s.kick_pending {
                return Ok(());
            }
            t.kick_pending = false;
            t.consumer = Consumer::Peek;
        }
    }
    next.push(t);
    Ok(())
}

fn after_turn(turn: Turn) -> Consumer {
    match turn {
        Turn::Full => Consumer::Peek,
        Turn::Drained => Consumer::AfterTurn,
    }
}

/// What an exhaustive search found.
#[derive(Debug)]
struct Outcome {
    states: usize,
    /// States in which the producer, or the consumer, sleeps: the model is not vacuous.
    producer_asleep: usize,
    consumer_asleep: usize,
    /// The first violation found, in words.
    violation: Option<String>,
}

/// Every reachable state, breadth first. Checks in each state that no message is overwritten
/// before it was read nor read before it was written (`successors`), that a state with no
/// successor is the good end (every message delivered, the producer done, the consumer asleep),
/// naming a lost wake-up or deadlock otherwise, and, over the whole graph, that the good end can
/// be reached from every state (nothing can get stuck, and no spinning cycle is inescapable).
fn explore(config: Config, mutation: Mutation) -> Outcome {
    let initial = State::initial(&config);
    let mut index: HashMap<State, usize> = HashMap::new();
    let mut states = vec![initial.clone()];
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new()];
    index.insert(initial, 0);
    let mut queue = VecDeque::from([0usize]);
    let mut good = Vec::new();
    let mut asleep = (0, 0);
    let outcome = |states: usize, asleep: (usize, usize), violation| Outcome {
        states,
        producer_asleep: asleep.0,
        consumer_asleep: asleep.1,
        violation,
    };
    while let Some(i) = queue.pop_front() {
        let state = states[i].clone();
        asleep.0 += usize::from(state.producer == Producer::Sleep);
        asleep.1 += usize::from(state.consumer == Consumer::Sleep);
        if overwritten(&state, &config) {
            return outcome(states.len(), asleep, Some(format!("a slot overwritten before read: {state:?}")));
        }
        let next = match successors(&state, &config, mutation) {
            Ok(next) => next,
            Err(broken) => return outcome(states.len(), asleep, Some(broken)),
        };
        if next.is_empty() {
            if state.done(&config) {
                good.push(i);
                continue;
            }
            return outcome(states.len(), asleep, Some(stuck(&state)));
        }
        for t in next {
            let j = *index.entry(t.clone()).or_insert_with(|| {
                states.push(t);
                predecessors.push(Vec::new());
                queue.push_back(states.len() - 1);
                states.len() - 1
            });
            predecessors[j].push(i);
        }
    }
    // Backwards from the good ends: every state must reach one.
    let mut reaches = vec![false; states.len()];
    let mut work = good;
    for &g in &work {
        reaches[g] = true;
    }
    while let Some(j) = work.pop() {
        for &i in &predecessors[j] {
            if !reaches[i] {
                reaches[i] = true;
                work.push(i);
            }
        }
    }
    let violation = reaches
        .iter()
        .position(|r| !r)
        .map(|i| format!("a state from which the messages can never all arrive: {:?}", states[i]));
    outcome(states.len(), asleep, violation)
}

/// The producer wrote over a message the consumer has not read (a check of the ring's room).
fn overwritten(s: &State, config: &Config) -> bool {
    s.produced - s.consumed > config.capacity
}

fn stuck(s: &State) -> String {
    let data_waiting = s.producer_index != s.consumed;
    let room_waiting = s.produced - s.consumer_index < s.slots.len() as u8;
    let what = match (s.producer, s.consumer) {
        (_, Consumer::Sleep) if data_waiting => "lost wake-up: the consumer sleeps with data published",
        (Producer::Sleep, _) if room_waiting => "lost wake-up: the producer sleeps with room released",
        (Producer::Sleep, Consumer::Sleep) => "deadlock: both sides asleep",
        _ => "stuck",
    };
    format!("{what}: {s:?}")
}

/// The configurations every model runs: rings of 1 to 3 messages, up to 5 messages, publishing
/// after every message or in groups, releasing after every message or in turns, and the consumer
/// starting asleep or awake.
fn configs() -> Vec<Config> {
    let mut all = Vec::new();
    for capacity in 1..=3 {
        for messages in 1..=5 {
            for publish_every in [1, 2, 3] {
                for per_turn in [1, 2] {
                    for consumer_asleep in [true, false] {
                        all.push(Config { capacity, messages, publish_every, per_turn, consumer_asleep });
                    }
                }
            }
        }
    }
    all
}

#[test]
#[cfg_attr(miri, ignore = "pure logic, no unsafe: nothing for Miri, and far too slow under it")]
fn no_lost_wake_up_no_deadlock_every_message_delivered() {
    let (mut total, mut largest, mut producer_asleep, mut consumer_asleep) = (0, 0, 0, 0);
    for config in configs() {
        let outcome = explore(config, Mutation::None);
        assert!(outcome.violation.is_none(), "{config:?}: {}", outcome.violation.unwrap());
        total += outcome.states;
        largest = largest.max(outcome.states);
        producer_asleep += outcome.producer_asleep;
        consumer_asleep += outcome.consumer_asleep;
    }
    std::println!(
        "signalling model: {} configurations, {total} states ({largest} in the largest), the producer asleep in \
         {producer_asleep}, the consumer in {consumer_asleep}",
        configs().len()
    );
    // A search that explored (almost) nothing, or never slept, would pass vacuously.
    assert!(total > 100_000, "only {total} states explored");
    assert!(producer_asleep > 0 && consumer_asleep > 0, "both sides must be seen asleep");
}

#[test]
#[cfg_attr(miri, ignore = "pure logic, no unsafe: nothing for Miri, and far too slow under it")]
fn every_weakened_protocol_loses_a_wake_up() {
    for mutation in [
        Mutation::NoDataRecheck,
        Mutation::DataFenceRemoved,
        Mutation::DataRecheckCached,
        Mutation::PublishFenceRemoved,
        Mutation::NoSpaceRecheck,
        Mutation::ReleaseFenceRemoved,
    ] {
        let found = configs().into_iter().find_map(|config| explore(config, mutation).violation.map(|v| (config, v)));
        let (config, violation) = found.unwrap_or_else(|| panic!("{mutation:?}: no violation found"));
        assert!(violation.contains("lost wake-up"), "{mutation:?}: {violation}");
        std::println!("{mutation:?} fails as it must, with {config:?}: {}", &violation[..violation.len().min(120)]);
    }
}
