//! Batched writes and reads: many messages per ring index store and per doorbell.
//!
//! [`Port::write`] makes each message visible on its own: one store of the ring's producer index
//! (a cache line the secure side is reading), one full fence, one look at its signal flag, per
//! message. That is most of the cost of a small message. [`Port::write_batch`] appends many
//! messages and publishes once per [`PUBLISH_BYTES`] of records (so that the secure side can
//! start on a long batch while the rest is written), whenever the ring is full (before waiting
//! for room), and at the end. [`Port::read_batch`] is the mirror image: it takes every message
//! there is and hands the space back once.
//!
//! Nothing else changes: the ring's checks of the secure side's indices and records are the same
//! as for one message, and so is back-pressure (a full ring waits, nothing is dropped).

use tzmk_interface::port::ring::{RecvError, SendError};

use crate::{Error, Port, Result};

/// Record bytes appended by [`Port::write_batch`] between two publishes, at most (or a quarter
/// of the ring, if smaller). Large enough that the index store and its fence cost little per
/// 64 B message (~900 of them), small enough that the secure side starts soon.
pub const PUBLISH_BYTES: usize = 64 << 10;

impl Port {
    /// Sends every message of `messages`, in order, waiting for room as [`write`](Self::write)
    /// does (back-pressure: nothing is dropped). Returns how many were sent.
    ///
    /// The messages become visible to the secure side in groups: after [`PUBLISH_BYTES`] of
    /// records (or a quarter of the ring), when the ring is full, and when the batch ends, with
    /// one index store and at most one kick each; within a group, no message is visible before
    /// the group is. On an error the batch stops; every message before the one that failed was
    /// sent (and published).
    pub fn write_batch<'m>(&mut self, messages: impl IntoIterator<Item = &'m [u8]>) -> Result<usize> {
        let mut sent = 0;
        let outcome = self.append_all(messages, &mut sent);
        let published = self.publish_batch();
        outcome.and(published).map(|()| sent)
    }

    fn append_all<'m>(&mut self, messages: impl IntoIterator<Item = &'m [u8]>, sent: &mut usize) -> Result<()> {
        let every = PUBLISH_BYTES.min(self.producer.layout().capacity() / 4);
        let mut unpublished = 0;
        for message in messages {
            match self.producer.try_send(message) {
                Ok(()) => {
                    unpublished += message.len() + tzmk_interface::port::ring::RECORD_HEADER;
                    if unpublished >= every {
                        self.publish_batch()?;
                        unpublished = 0;
                    }
                }
                Err(SendError::Full) => {
                    // What is queued goes first, then this message the one-message way: it spins,
                    // asks for room and sleeps as `write` does, and publishes it.
                    self.publish_batch()?;
                    unpublished = 0;
                    self.write(message)?;
                }
                Err(SendError::TooLarge) => {
                    return Err(Error::TooLarge { length: message.len(), max: self.max_message })
                }
                Err(SendError::Peer(m)) => return Err(self.peer(m)),
            }
            *sent += 1;
        }
        Ok(())
    }

    /// Makes what was appended visible, and kicks the secure side if it asked for a signal.
    fn publish_batch(&mut self) -> Result<()> {
        if self.producer.publish() {
            self.transport.kick(self.id)?;
        }
        Ok(())
    }

    /// Receives the messages there are, up to `max`, waiting for the first as
    /// [`read`](Self::read) does: each is copied into `buf` and handed to `each`, in order.
    /// Returns how many. The space they took is handed back to the secure side once, at the end
    /// (and the secure side woken if it waits for room), instead of once per message.
    ///
    /// On an error (a message larger than `buf`, or a broken ring) the messages before it were
    /// received and handed to `each`; a message larger than `buf` stays in the ring.
    pub fn read_batch(&mut self, buf: &mut [u8], max: usize, mut each: impl FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let length = self.read(buf)?;
        each(&buf[..length]);
        let mut received = 1;
        let outcome = loop {
            if received == max {
                break Ok(());
            }
            match self.consumer.try_recv(buf) {
                Ok(Some(length)) => {
                    each(&buf[..length]);
                    received += 1;
                }
                Ok(None) => break Ok(()),
                Err(RecvError::BufferTooSmall(length)) => break Err(Error::TooLarge { length, max: buf.len() }),
                Err(RecvError::Peer(m)) => break Err(self.peer(m)),
            }
        };
        if self.consumer.release() {
            self.transport.kick(self.id)?;
        }
        outcome.map(|()| received)
    }
}
