//! The host backend's kernel model gives PDs seL4's semantics: these tests run small PDs on it.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use microkit::sim::{ChannelConfig, ConfigError, Event, IrqConfig, Kernel, Monitor, PdConfig};
use microkit::{Channel, ChannelSet, Handler, MessageInfo, SmcContext};

const WAIT: Duration = Duration::from_secs(5);

fn pd(name: &str, priority: u8) -> PdConfig {
    PdConfig::new(name, priority)
}

fn link(configs: &mut [PdConfig], a: usize, a_id: u8, b: usize, b_id: u8, pp_a_to_b: bool) {
    configs[a].channels.push(ChannelConfig { id: a_id, peer: b, peer_id: b_id, notify: true, pp: pp_a_to_b });
    configs[b].channels.push(ChannelConfig { id: b_id, peer: a, peer_id: a_id, notify: true, pp: false });
}

struct Echo;
impl Monitor for Echo {
    fn smc(&self, caller: &str, args: &SmcContext) -> SmcContext {
        [args[0] + 1, caller.len() as u64, 0, 0, 0, 0, 0, 0]
    }
}

fn kernel(configs: Vec<PdConfig>) -> (Arc<Kernel>, Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    (Kernel::new(configs, Echo, tx).expect("valid configuration"), rx)
}

fn wait_ready(events: &Receiver<Event>, n: usize) {
    for _ in 0..n {
        match events.recv_timeout(WAIT).expect("PD ready") {
            Event::Ready { .. } => {}
            other => panic!("expected ready, got {other:?}"),
        }
    }
}

/// Reports every wake-up's channel set to the test; acknowledges IRQs only when told to.
struct Recorder {
    seen: Sender<u64>,
    ack_irq: Option<Channel>,
}

impl Handler for Recorder {
    type Error = std::convert::Infallible;
    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        self.seen.send(channels.bits()).unwrap();
        if let Some(irq) = self.ack_irq.filter(|irq| channels.contains(*irq)) {
            irq.irq_ack().unwrap();
        }
        Ok(())
    }
}

#[test]
fn irq_is_masked_until_acknowledged_and_latched_meanwhile() {
    let mut configs = vec![pd("driver", 100)];
    configs[0].irqs.push(IrqConfig { id: 3, irq: 77 });
    let (kernel, events) = kernel(configs);
    let (seen, rx) = mpsc::channel();
    kernel.start(0, move || Recorder { seen, ack_irq: None });
    wait_ready(&events, 1);

    kernel.raise_irq(77).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 1 << 3);
    // Not acknowledged: a second interrupt is latched, not delivered.
    kernel.raise_irq(77).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "a masked IRQ was delivered");
    assert!(kernel.raise_irq(78).is_err(), "an IRQ no PD claims is refused");
}

#[test]
fn acknowledged_irq_is_delivered_again() {
    let mut configs = vec![pd("driver", 100)];
    configs[0].irqs.push(IrqConfig { id: 0, irq: 40 });
    let (kernel, events) = kernel(configs);
    let (seen, rx) = mpsc::channel();
    kernel.start(0, move || Recorder { seen, ack_irq: Some(Channel::new(0)) });
    wait_ready(&events, 1);
    for _ in 0..3 {
        kernel.raise_irq(40).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), 1);
    }
}

/// Calls its peer on channel 0 at init with MR0 = 41 and reports the reply.
struct Caller;
/// Adds one to MR0 and replies with label 9.
struct Adder {
    calls: Sender<(usize, u64, String)>,
}

impl Handler for Caller {
    type Error = std::convert::Infallible;
}

impl Handler for Adder {
    type Error = std::convert::Infallible;
    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        self.calls.send((channel.index(), msg_info.label(), microkit::pd_name().to_owned())).unwrap();
        microkit::set_mr(0, microkit::get_mr(0) + 1);
        Ok(MessageInfo::new(9, 1))
    }
}

#[test]
fn protected_call_copies_message_registers_both_ways() {
    let mut configs = vec![pd("client", 100), pd("server", 200)];
    link(&mut configs, 0, 5, 1, 2, true);
    let (kernel, events) = kernel(configs);
    let (calls, call_rx) = mpsc::channel();
    let (result_tx, result_rx) = mpsc::channel();
    kernel.start(1, move || Adder { calls });
    wait_ready(&events, 1);
    kernel.start(0, move || {
        microkit::set_mr(0, 41);
        microkit::set_mr(1, 1000); // beyond the count: must not travel
        let reply = Channel::new(5).pp_call(MessageInfo::new(7, 1));
        result_tx.send((reply.label(), reply.count(), microkit::get_mr(0), microkit::pd_name())).unwrap();
        Caller
    });
    // The callee ran as itself, on the channel id of its own end.
    assert_eq!(call_rx.recv_timeout(WAIT).unwrap(), (2, 7, "server".to_owned()));
    assert_eq!(result_rx.recv_timeout(WAIT).unwrap(), (9, 1, 42, "client"));
}

#[test]
fn callee_must_outrank_caller() {
    let mut configs = vec![pd("client", 100), pd("server", 100)];
    link(&mut configs, 0, 0, 1, 0, true);
    let (tx, _rx) = mpsc::channel();
    let err = Kernel::new(configs, Echo, tx).unwrap_err();
    assert_eq!(err, ConfigError::CalleeNotHigher { caller: "client".into(), callee: "server".into() });
}

#[test]
fn duplicate_channel_ids_are_refused() {
    let mut configs = vec![pd("a", 100), pd("b", 100)];
    link(&mut configs, 0, 4, 1, 0, false);
    configs[0].irqs.push(IrqConfig { id: 4, irq: 50 });
    let (tx, _rx) = mpsc::channel();
    assert_eq!(Kernel::new(configs, Echo, tx).unwrap_err(), ConfigError::DuplicateId { pd: "a".into(), id: 4 });
}

/// Panics on its first notification.
struct Fragile;
impl Handler for Fragile {
    type Error = std::convert::Infallible;
    fn notified(&mut self, _: ChannelSet) -> Result<(), Self::Error> {
        panic!("fragile PD breaks");
    }
}

#[test]
fn a_panic_is_a_fault_of_that_pd_only() {
    let mut configs = vec![pd("fragile", 100), pd("steady", 100)];
    configs[0].irqs.push(IrqConfig { id: 0, irq: 60 });
    configs[1].irqs.push(IrqConfig { id: 0, irq: 61 });
    let (kernel, events) = kernel(configs);
    let (seen, rx) = mpsc::channel();
    kernel.start(0, || Fragile);
    kernel.start(1, move || Recorder { seen, ack_irq: Some(Channel::new(0)) });
    wait_ready(&events, 2);
    kernel.raise_irq(60).unwrap();
    match events.recv_timeout(WAIT).unwrap() {
        Event::Fault { pd, reason } => assert_eq!((pd.as_str(), reason.as_str()), ("fragile", "fragile PD breaks")),
        other => panic!("expected a fault, got {other:?}"),
    }
    assert!(kernel.pds()[0].has_faulted());
    kernel.raise_irq(61).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 1, "the other PD keeps running");
}

/// Fails its protected procedure with an error.
struct Failing;
impl Handler for Failing {
    type Error = &'static str;
    fn protected(&mut self, _: Channel, _: MessageInfo) -> Result<MessageInfo, Self::Error> {
        Err("refuses")
    }
}

#[test]
fn a_callee_fault_faults_the_caller_too() {
    let mut configs = vec![pd("client", 100), pd("server", 200)];
    link(&mut configs, 0, 0, 1, 0, true);
    let (kernel, events) = kernel(configs);
    kernel.start(1, || Failing);
    wait_ready(&events, 1);
    kernel.start(0, || {
        Channel::new(0).pp_call(MessageInfo::new(1, 0));
        Caller
    });
    let mut faults: Vec<(String, String)> = (0..2)
        .map(|_| match events.recv_timeout(WAIT).unwrap() {
            Event::Fault { pd, reason } => (pd, reason),
            other => panic!("expected a fault, got {other:?}"),
        })
        .collect();
    faults.sort();
    assert_eq!(faults[0].0, "client");
    assert!(faults[0].1.contains("faulted the callee"), "{faults:?}");
    assert_eq!(faults[1], ("server".to_owned(), "handler failed: refuses".to_owned()));
}

#[test]
fn smc_needs_the_right_and_reaches_the_monitor() {
    let mut configs = vec![pd("plain", 100), pd("trusted", 100)];
    configs[1].smc = true;
    let (kernel, events) = kernel(configs);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    kernel.start(0, move || {
        tx.send(("plain", microkit::smc_call(&[1; 8]).map(|r| r[0]).map_err(|e| e.code))).unwrap();
        Caller
    });
    kernel.start(1, move || {
        tx2.send(("trusted", microkit::smc_call(&[1; 8]).map(|r| r[1]).map_err(|e| e.code))).unwrap();
        Caller
    });
    wait_ready(&events, 2);
    let mut results: Vec<_> = (0..2).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    results.sort();
    assert_eq!(results, vec![("plain", Err(2)), ("trusted", Ok("trusted".len() as u64))]);
}

#[test]
fn setvars_and_deferred_notify() {
    let mut configs = vec![pd("sender", 100), pd("receiver", 100)];
    link(&mut configs, 0, 1, 1, 6, false);
    configs[0].setvars.insert("peer_channel".into(), 1);
    let (kernel, events) = kernel(configs);
    let (seen, rx) = mpsc::channel();
    kernel.start(1, move || Recorder { seen, ack_irq: None });
    kernel.start(0, || {
        let channel = microkit::channel!(peer_channel);
        channel.defer_notify().unwrap();
        assert!(channel.defer_notify().is_err(), "one deferred action at a time");
        Caller
    });
    wait_ready(&events, 2);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 1 << 6);
}
