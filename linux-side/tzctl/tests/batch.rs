//! tzcomm's batched `Port::write_batch` and `Port::read_batch` against the secure world in the
//! host simulator (its PDs as threads of this process): every message arrives, counted by the
//! sink or echoed whole and in order, across many wraps of the rings and many waits for room.

use std::path::PathBuf;

use tzcomm::pattern::pattern;
use tzcomm::{Error, Tz};
use tzmk_sim::{Options, Simulator};

fn simulator(name: &str) -> Simulator {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = std::env::temp_dir().join(format!("tzctl-batch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let options = Options { system: root.join("system.xml"), platform: None, run_dir };
    Simulator::start(&options).expect("the simulator starts system.xml")
}

#[test]
fn a_batch_reaches_the_sink_whole() {
    let sim = simulator("sink");
    let tz = Tz::sim(sim.run_dir()).unwrap();
    let mut sink = tz.open("sink").unwrap();
    // Sizes from empty to the port's largest: pads, wraps, and a ring filled many times over.
    let max = sink.max_message();
    let sizes: Vec<usize> = (0..20_000u64).map(|i| [0, 1, 7, 64, 100, 4096, max][(i % 7) as usize]).collect();
    let messages: Vec<Vec<u8>> = sizes.iter().map(|&size| vec![0x5a; size]).collect();
    let sent = sink.write_batch(messages.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(sent, messages.len());
    assert_eq!(sink.write_batch(std::iter::empty()).unwrap(), 0, "an empty batch sends nothing");
    sink.flush().unwrap();
    let status = sink.status().unwrap();
    assert_eq!(status.messages_in, messages.len() as u64);
    assert_eq!(status.bytes_in, sizes.iter().sum::<usize>() as u64);
    sink.close().unwrap();
    sim.shutdown();
}

#[test]
fn a_batch_stops_at_a_message_too_large_having_sent_those_before() {
    let sim = simulator("too-large");
    let tz = Tz::sim(sim.run_dir()).unwrap();
    let mut sink = tz.open("sink").unwrap();
    let (small, large) = (vec![1u8; 10], vec![2u8; sink.max_message() + 1]);
    let batch = [&small[..], &small[..], &small[..], &large[..], &small[..]];
    let max = sink.max_message();
    assert!(
        matches!(sink.write_batch(batch), Err(Error::TooLarge { length, max: m }) if length == max + 1 && m == max)
    );
    sink.flush().unwrap();
    let status = sink.status().unwrap();
    assert_eq!((status.messages_in, status.bytes_in), (3, 30), "the three before it were sent");
    sink.close().unwrap();
    sim.shutdown();
}

#[test]
fn echoes_come_back_whole_and_in_order_in_batches() {
    let sim = simulator("echo");
    let tz = Tz::sim(sim.run_dir()).unwrap();
    let mut echo = tz.open("echo").unwrap();
    let (mut message, mut buf) = (Vec::new(), vec![0u8; echo.max_message()]);
    let mut expected = 0u64;
    // Rounds of writes that fit in the echo's rings, each read back in batches of at most 7.
    for round in 0..50u64 {
        let messages: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                let index = round * 40 + i;
                pattern(index, (index as usize * 37) % 200, &mut message);
                message.clone()
            })
            .collect();
        assert_eq!(echo.write_batch(messages.iter().map(Vec::as_slice)).unwrap(), 40);
        let mut received = 0;
        while received < messages.len() {
            let n = echo
                .read_batch(&mut buf, 7, |reply| {
                    pattern(expected, (expected as usize * 37) % 200, &mut message);
                    assert_eq!(reply, &message[..], "echo {expected}");
                    expected += 1;
                })
                .unwrap();
            assert!((1..=7).contains(&n), "a batch takes at least one message, at most max: {n}");
            received += n;
        }
    }
    assert_eq!(echo.read_batch(&mut buf, 0, |_| unreachable!("max 0 takes nothing")).unwrap(), 0);
    let status = echo.status().unwrap();
    assert_eq!((status.messages_in, status.messages_out), (2000, 2000));
    echo.close().unwrap();
    sim.shutdown();
}
