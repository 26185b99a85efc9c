use std::{
    sync::atomic::{AtomicUsize, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use super::{
    tick::{
        next_period, Load, BEHIND_AGE_MS, BEHIND_MEAN, BEHIND_WAITING, CALM_AGE8, CALM_MEAN,
        CALM_WAITING,
    },
    *,
};
use crate::backend::broker::Origin;

/// Counts wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl std::task::Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn frame(i: usize) -> Bytes {
    Bytes::from(format!("{{\"n\":{i}}}"))
}

#[test]
fn outbox_keeps_order_and_wakes_only_an_empty_queues_consumer() {
    let outbox = Outbox::new(16, None);
    let counter = Arc::new(Counter::default());
    let waker = counter.clone().into();
    let mut cx = Context::from_waker(&waker);
    assert!(outbox.poll_pop(&mut cx).is_pending());
    for i in 0..3 {
        assert!(outbox.send(frame(i)));
    }
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "one wake for the burst"
    );
    for i in 0..3 {
        assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(i))));
    }
    assert!(outbox.poll_pop(&mut cx).is_pending());
    assert!(outbox.send(frame(3)));
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    assert_eq!(outbox.try_pop(), Some(frame(3)));
}

#[test]
fn a_full_outbox_raises_slow_and_a_closed_one_refuses() {
    let outbox = Outbox::new(2, None);
    assert!(outbox.send(frame(0)) && outbox.send(frame(1)));
    assert_eq!(outbox.alarm.raised(), 0);
    assert!(!outbox.send(frame(2)));
    assert_eq!(outbox.alarm.raised(), Alarm::SLOW);
    assert_eq!(outbox.try_pop(), Some(frame(0)));

    let counter = Arc::new(Counter::default());
    let waker = counter.clone().into();
    let mut cx = Context::from_waker(&waker);
    assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(Some(frame(1))));
    assert!(outbox.poll_pop(&mut cx).is_pending());
    outbox.close();
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "closing wakes the consumer"
    );
    assert_eq!(outbox.poll_pop(&mut cx), Poll::Ready(None));
    assert!(!outbox.send(frame(3)));
}

/// A transport that takes every inline write.
#[derive(Default)]
struct Taker(AtomicUsize);

impl InlineWrite for Taker {
    fn try_write(&self, _: Bytes) -> Inline {
        self.0.fetch_add(1, Ordering::SeqCst);
        Inline::Written
    }

    fn try_write_queued(&self, frames: &mut std::collections::VecDeque<Bytes>) -> Flushed {
        self.0.fetch_add(frames.len(), Ordering::SeqCst);
        frames.clear();
        Flushed::Written
    }
}

#[test]
fn a_big_room_is_queued_but_for_its_last_recipients_and_the_sender_is_skipped() {
    let node = NodeId::random();
    let hub = Hub::new(node);
    let room = RoomId::new("big");
    let peers: Vec<(Arc<Outbox>, Arc<Taker>)> = (1..=100)
        .map(|conn| {
            let peer = Outbox::new(8, None);
            let taker = Arc::new(Taker::default());
            peer.attach(taker.clone());
            hub.add_to_room(&room, conn, &peer, Vec::new());
            (peer, taker)
        })
        .collect();
    let envelope = |conn| Envelope {
        origin: Origin { node, conn },
        topic: Topic::Room(room.clone()),
        frame: frame(0),
    };
    let direct = |peers: &[(Arc<Outbox>, Arc<Taker>)]| -> usize {
        peers.iter().map(|(_, t)| t.0.load(Ordering::SeqCst)).sum()
    };
    let queued = |peers: &[(Arc<Outbox>, Arc<Taker>)]| -> usize {
        peers.iter().filter(|(p, _)| p.try_pop().is_some()).count()
    };
    assert_eq!(hub.deliver(&envelope(None), Push::Inline), 100);
    assert_eq!(direct(&peers), INLINE_PER_ENVELOPE);
    assert_eq!(queued(&peers), 100 - INLINE_PER_ENVELOPE);
    // Without the dispatcher's go-ahead, nothing is written inline; the sender's own
    // connection gets nothing.
    for (peer, _) in &peers {
        peer.end_write();
    }
    assert_eq!(hub.deliver(&envelope(Some(7)), Push::Wake), 99);
    assert_eq!(direct(&peers), INLINE_PER_ENVELOPE);
    assert_eq!(queued(&peers), 99);
}

/// A fixed-period flush tick on its own task, and one outbox on it whose transport takes every
/// inline write (`taker` counts them) and whose consumer's wake-ups `counter` counts.
struct TickedOutbox {
    tick: Arc<FlushTick>,
    task: tokio::task::JoinHandle<()>,
    outbox: Arc<Outbox>,
    taker: Arc<Taker>,
    counter: Arc<Counter>,
}

fn ticked_outbox(period: Duration) -> TickedOutbox {
    let tick = FlushTick::new(period, period);
    let task = tokio::spawn(tick.clone().run());
    let outbox = Outbox::new(16, Some(tick.clone()));
    let taker = Arc::new(Taker::default());
    outbox.attach(taker.clone());
    TickedOutbox {
        tick,
        task,
        outbox,
        taker,
        counter: Arc::new(Counter::default()),
    }
}

#[tokio::test(start_paused = true)]
async fn frames_soon_after_a_write_wait_for_the_tick_and_leave_together() {
    let period = Duration::from_millis(5);
    let TickedOutbox {
        tick,
        task,
        outbox,
        taker,
        counter,
    } = ticked_outbox(period);
    let waker = counter.clone().into();
    let mut cx = Context::from_waker(&waker);
    assert!(outbox.poll_take(&mut cx).is_pending());

    // An idle connection: written at once, by the caller.
    assert!(outbox.offer(frame(0)));
    assert_eq!(taker.0.load(Ordering::SeqCst), 1);
    // Within the period: queued, and nobody is woken before the tick.
    for i in 1..4 {
        assert!(outbox.offer(frame(i)));
    }
    assert_eq!(taker.0.load(Ordering::SeqCst), 1);
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    assert!(outbox.poll_take(&mut cx).is_pending(), "held for the tick");
    tokio::time::sleep(period + Duration::from_millis(1)).await;
    // The tick wrote the batch itself, in one write: the session was not woken.
    assert_eq!(taker.0.load(Ordering::SeqCst), 4);
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    // A frame while the session is writing waits for the next tick, which wakes the session
    // to take it.
    let writing = outbox.begin_write();
    assert!(outbox.offer(frame(4)));
    tokio::time::sleep(period + Duration::from_millis(1)).await;
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "one wake for the batch"
    );
    drop(writing);
    take_one(&outbox, &mut cx, frame(4));
    // After a quiet period the next frame is written at once again.
    tokio::time::sleep(period).await;
    assert!(outbox.offer(frame(5)));
    assert_eq!(taker.0.load(Ordering::SeqCst), 5);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    task.abort();
    tick.stop();
}

#[test]
fn the_tick_period_goes_long_only_while_the_node_is_behind() {
    let ms = Duration::from_millis;
    let (min, max) = (ms(1), ms(8));
    let load = |backlog, age8, waiting| Load {
        backlog,
        age8,
        waiting,
    };
    // Keeping up: the shortest period, however much traffic there is.
    assert_eq!(next_period(min, load(0, 0, 0), min, max), None);
    assert_eq!(
        next_period(
            max,
            load(CALM_MEAN - 1, CALM_AGE8 - 1, CALM_WAITING - 1),
            min,
            max
        ),
        Some(min)
    );
    // Behind: the longest, in one step.
    assert_eq!(
        next_period(min, load(BEHIND_MEAN, 0, 0), min, max),
        Some(max)
    );
    assert_eq!(next_period(max, load(10_000, 0, 0), min, max), None);
    // Frames already late when dispatched (the host's cores are busy): the longest too, and
    // kept until they are on time again.
    assert_eq!(
        next_period(min, load(0, BEHIND_AGE_MS * 8, 0), min, max),
        Some(max)
    );
    assert_eq!(next_period(max, load(0, CALM_AGE8, 0), min, max), None);
    assert_eq!(
        next_period(max, load(0, CALM_AGE8 - 1, 0), min, max),
        Some(min)
    );
    // The process's threads waiting for a core (the host is short of cores, even if the
    // dispatcher keeps up): the longest, until they mostly get one again.
    assert_eq!(
        next_period(min, load(0, 0, BEHIND_WAITING), min, max),
        Some(max)
    );
    assert_eq!(next_period(max, load(0, 0, CALM_WAITING), min, max), None);
    assert_eq!(
        next_period(max, load(0, 0, CALM_WAITING - 1), min, max),
        Some(min)
    );
    // In between: kept (no flapping at the edge).
    assert_eq!(next_period(max, load(CALM_MEAN, 0, 0), min, max), None);
    assert_eq!(
        next_period(min, load(BEHIND_MEAN - 1, 0, 0), min, max),
        None
    );
    assert_eq!(
        next_period(min, load(0, 0, BEHIND_WAITING - 1), min, max),
        None
    );
}

/// The session takes `expected`, finds nothing more, and ends its write.
fn take_one(outbox: &Outbox, cx: &mut Context<'_>, expected: Bytes) {
    assert_eq!(
        outbox.poll_take(cx),
        Poll::Ready(Some(Outgoing::Frame(expected)))
    );
    assert!(outbox.poll_take(cx).is_pending());
    outbox.end_write();
}

/// Takes everything queued on `peers`, as their sessions would.
fn drain(peers: &[Arc<Outbox>]) {
    for peer in peers {
        while peer.try_pop().is_some() {}
    }
}

/// A flush tick running on its own task, with `n` outboxes on it; stopped when dropped.
struct RunningTick {
    tick: Arc<FlushTick>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningTick {
    fn drop(&mut self) {
        self.task.abort();
        self.tick.stop();
    }
}

fn running_tick(min: Duration, max: Duration, n: usize) -> (RunningTick, Vec<Arc<Outbox>>) {
    let tick = FlushTick::new(min, max);
    let task = tokio::spawn(tick.clone().run());
    let peers = (0..n)
        .map(|_| Outbox::new(64, Some(tick.clone())))
        .collect();
    (RunningTick { tick, task }, peers)
}

#[tokio::test(start_paused = true)]
async fn the_tick_lengthens_while_the_dispatcher_is_behind_and_not_for_dense_traffic() {
    let ms = Duration::from_millis;
    let (running, peers) = running_tick(ms(1), ms(8), 64);
    let tick = &running.tick;
    let pump = |peers: &[Arc<Outbox>]| {
        // Each connection gets two frames soon after its last write: held for the tick.
        for peer in peers {
            peer.end_write();
            assert!(peer.send(frame(0)) && peer.send(frame(1)));
        }
    };
    // Dense batches, no backlog: the shortest period throughout.
    for _ in 0..200 {
        pump(&peers);
        tokio::time::sleep(tick.period() + ms(1)).await;
        drain(&peers);
        assert_eq!(tick.period(), ms(1));
    }
    // The dispatcher falls behind: the longest period from the next window on.
    let mut seen = vec![tick.period()];
    for _ in 0..100 {
        for _ in 0..32 {
            tick.note_backlog(BEHIND_MEAN as usize);
        }
        pump(&peers);
        tokio::time::sleep(tick.period() + ms(1)).await;
        drain(&peers);
        if seen.last() != Some(&tick.period()) {
            seen.push(tick.period());
        }
    }
    assert_eq!(seen, vec![ms(1), ms(8)], "straight to the maximum");
    // Caught up: back to the shortest.
    for _ in 0..40 {
        for _ in 0..32 {
            tick.note_backlog(0);
        }
        pump(&peers);
        tokio::time::sleep(tick.period() + ms(1)).await;
        drain(&peers);
    }
    assert_eq!(tick.period(), ms(1));
}

#[tokio::test(start_paused = true)]
async fn a_stopped_tick_hands_its_connections_back_to_their_sessions() {
    let ms = Duration::from_millis;
    let tick = FlushTick::new(ms(5), ms(5));
    let task = tokio::spawn(tick.clone().run());
    let outbox = Outbox::new(16, Some(tick.clone()));
    let counter = Arc::new(Counter::default());
    let waker = counter.clone().into();
    let mut cx = Context::from_waker(&waker);
    assert!(outbox.poll_take(&mut cx).is_pending());
    outbox.end_write();
    assert!(outbox.send(frame(0)));
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "waiting for the tick");
    // The task dies (here: aborted, as when the chat is dropped): its guard stops the
    // tick, and the waiting connection is woken rather than left behind.
    task.abort();
    let _ = task.await;
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    take_one(&outbox, &mut cx, frame(0));
    // Later frames within the period wake the session at once.
    assert!(outbox.send(frame(1)));
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    assert!(tick.due().outboxes.is_empty());
}

#[test]
fn a_drained_outbox_gives_back_what_a_burst_grew() {
    let outbox = Outbox::new(1_024, None);
    for i in 0..100 {
        assert!(outbox.send(frame(i)));
    }
    assert!(outbox.buffer_capacity() >= 100);
    while outbox.try_pop().is_some() {}
    assert_eq!(outbox.buffer_capacity(), 0);
    // A batch's worth stays between batches: no allocation (nor growth) per batch...
    for i in 0..20 {
        assert!(outbox.send(frame(i)));
    }
    let grown = outbox.buffer_capacity();
    assert!(grown >= 20);
    while outbox.try_pop().is_some() {}
    assert_eq!(outbox.buffer_capacity(), grown);
    // ...until the connection's next keepalive ping, which leaves an idle connection a small
    // one (a frame at a time needs no more).
    outbox.trim();
    assert_eq!(outbox.buffer_capacity(), 0);
    assert!(outbox.send(frame(0)));
    assert_eq!(outbox.try_pop(), Some(frame(0)));
    let small = outbox.buffer_capacity();
    assert!(small > 0);
    outbox.trim();
    assert_eq!(outbox.buffer_capacity(), small);
}

#[tokio::test(start_paused = true)]
async fn a_batched_frame_waits_for_the_tick_which_writes_it_with_the_next_ones() {
    let period = Duration::from_millis(1);
    let TickedOutbox {
        tick,
        task,
        outbox,
        taker,
        counter,
    } = ticked_outbox(period);
    let waker = counter.clone().into();
    let mut cx = Context::from_waker(&waker);
    assert!(outbox.poll_take(&mut cx).is_pending());
    // The dispatcher is behind: even an idle connection's frame waits for the tick.
    for i in 0..3 {
        assert!(outbox.push(frame(i), Push::Batch));
    }
    assert_eq!(taker.0.load(Ordering::SeqCst), 0);
    tokio::time::sleep(period + Duration::from_millis(1)).await;
    assert_eq!(
        taker.0.load(Ordering::SeqCst),
        3,
        "written together by the tick"
    );
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "the session was not woken"
    );
    task.abort();
    tick.stop();
}
