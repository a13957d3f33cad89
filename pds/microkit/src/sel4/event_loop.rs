//! The PD's life after `_start`: `init`, then libmicrokit's `handler_loop`, forever.
//!
//! Follows Microkit 2.3.0 `libmicrokit/src/main.c`: a passive PD's first receive is fused with a
//! signal to the monitor (which then takes its scheduling context away); every IRQ in
//! `microkit_irqs` is acknowledged once before the first wait (seL4 issue #1536); each wait is a
//! `ReplyRecv` when a protected call or fault is owed a reply, an `NBSendRecv` when a notify or IRQ
//! ack was deferred, and a plain `Recv` otherwise, all on the INPUT endpoint with the REPLY object.

use core::fmt::Display;

use super::cspace::{self, Wakeup};
use super::syscalls;
use super::{ipc_buffer, symbols, take_deferred, PreparedSend};
use crate::{Channel, ChannelSet, Child, Handler, MessageInfo};

pub fn run_main<H: Handler>(init: impl FnOnce() -> H) -> ! {
    let mut handler = init();

    let mut first_send = take_deferred();
    if symbols::is_passive() {
        // main.c overwrites a notify or IRQ ack deferred by init() with the monitor signal; here
        // it is carried out first instead of being lost.
        if let Some(deferred) = first_send {
            deferred.send();
        }
        first_send = Some(PreparedSend { cap: cspace::MONITOR_ENDPOINT, info: MessageInfo::new(0, 0) });
    }

    for channel in ChannelSet::from_bits(symbols::irq_channels()).iter() {
        // As main.c, which ignores the result: the channel is in microkit_irqs, so the tool
        // installed the IRQ handler cap and the kernel accepts the ack.
        let _ = super::irq_ack(channel.index());
    }

    let mut reply: Option<MessageInfo> = None;
    loop {
        let send = first_send.take().or_else(take_deferred);
        let received = match (reply.take(), send) {
            (Some(reply), send) => {
                // There is no system call that replies, sends and receives at once.
                if let Some(send) = send {
                    send.send();
                }
                ipc_buffer::transfer(|mrs| {
                    // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
                    unsafe { syscalls::reply_recv(cspace::INPUT, reply.into_word(), cspace::REPLY, mrs) }
                })
            }
            (None, Some(send)) => ipc_buffer::transfer(|mrs| {
                // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
                unsafe { syscalls::nb_send_recv(send.cap, send.info.into_word(), cspace::INPUT, cspace::REPLY, mrs) }
            }),
            (None, None) => ipc_buffer::transfer(|mrs| {
                // SAFETY: `transfer` holds the IPC buffer exclusively for the call.
                unsafe { syscalls::recv(cspace::INPUT, cspace::REPLY, mrs) }
            }),
        };

        let msg_info = MessageInfo::from_word(received.info);
        match Wakeup::from_badge(received.badge) {
            Wakeup::ChildFault { child } => {
                reply = or_die(handler.fault(Child::new(child), msg_info));
            }
            Wakeup::ProtectedCall { channel } => {
                reply = Some(or_die(handler.protected(Channel::new(channel), msg_info)));
            }
            Wakeup::Notified { channels } => {
                let channels = ChannelSet::from_bits(channels);
                if !channels.is_empty() {
                    or_die(handler.notified(channels));
                }
            }
        }
    }
}

/// A handler error ends the PD as a panic does (rust-sel4 aborts in the same case).
fn or_die<T, E: Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("handler failed: {error}"))
}
