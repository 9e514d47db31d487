//! Accounting on the receiving side: which sequence numbers arrived from which publisher (hence
//! losses, duplicates, reordering) and the end-to-end latency histogram. Pure data, no I/O, so it
//! is tested on its own.
//!
//! Losses are counted against what each publisher says it sent ([`tally`]) when publisher and
//! subscriber run in the same process, and from gaps in the sequence numbers otherwise
//! ([`Receiver::gaps`]).

use super::payload;
use hdrhistogram::Histogram;
use std::time::Instant;

/// Sequence numbers at or above this are refused (counted as foreign) so a bogus payload cannot
/// make the bitmap grow without bound: 2^30 messages per publisher, a 128 MiB bitmap at most.
pub const MAX_SEQ: u64 = 1 << 30;
/// Publisher ids at or above this are counted as foreign.
pub const MAX_PUBLISHERS: u32 = 1 << 16;
/// Largest latency the histograms hold, in nanoseconds (one hour); larger values are clamped.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// The set of sequence numbers received from one publisher, as a bitmap.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    bits: Vec<u64>,
    distinct: u64,
    min: Option<u64>,
    max: Option<u64>,
}

/// What [`SeqSet::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// First time this number is seen.
    New,
    /// Already seen.
    Duplicate,
    /// At or above [`MAX_SEQ`]; not recorded.
    OutOfRange,
}

impl SeqSet {
    /// Records `seq`.
    pub fn insert(&mut self, seq: u64) -> Insert {
        if seq >= MAX_SEQ {
            return Insert::OutOfRange;
        }
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.bits.len() <= word {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let Some(w) = self.bits.get_mut(word) else {
            return Insert::OutOfRange;
        };
        if *w & bit != 0 {
            return Insert::Duplicate;
        }
        *w |= bit;
        self.distinct += 1;
        self.min = Some(self.min.map_or(seq, |m| m.min(seq)));
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        Insert::New
    }

    /// How many distinct numbers were seen.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Numbers missing between the smallest and the largest seen.
    pub fn gaps(&self) -> u64 {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => (hi - lo + 1).saturating_sub(self.distinct),
            _ => 0,
        }
    }

    /// Adds every number of `self` to `into`; returns how many `into` already had.
    pub fn union_into(&self, into: &mut SeqSet) -> u64 {
        if into.bits.len() < self.bits.len() {
            into.bits.resize(self.bits.len(), 0);
        }
        let mut overlap = 0u64;
        for (dst, src) in into.bits.iter_mut().zip(&self.bits) {
            overlap += u64::from((*dst & *src).count_ones());
            *dst |= *src;
        }
        into.distinct = into.distinct + self.distinct - overlap;
        into.min = match (into.min, self.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        into.max = match (into.max, self.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        overlap
    }
}

/// An empty latency histogram in nanoseconds (1 ns to 1 hour, 3 significant digits).
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)?)
}

/// Everything one subscriber connection received.
#[derive(Debug)]
pub struct Receiver {
    per_publisher: Vec<SeqSet>,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received a second time (same publisher and sequence number).
    pub duplicates: u64,
    /// Messages whose sequence number is lower than the last one from the same publisher.
    pub out_of_order: u64,
    /// Messages that were not benchmark payloads, or had an id or number out of range.
    pub foreign: u64,
    /// Messages whose send time is later than their receive time (clocks of two processes).
    pub clock_skew: u64,
    /// End-to-end latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// When the first message arrived.
    pub first_at: Option<Instant>,
    /// When the last message arrived.
    pub last_at: Option<Instant>,
    last_seq: Vec<Option<u64>>,
}

impl Receiver {
    /// An empty receiver; `latency` is an empty histogram from [`new_histogram`] (cloned, so that
    /// creating one cannot fail).
    pub fn new(latency: Histogram<u64>) -> Self {
        Receiver {
            per_publisher: Vec::new(),
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            foreign: 0,
            clock_skew: 0,
            latency,
            first_at: None,
            last_at: None,
            last_seq: Vec::new(),
        }
    }

    /// Accounts for one message payload received at `now_ns` (nanoseconds since the Unix epoch).
    pub fn record(&mut self, payload: &[u8], now_ns: u64) {
        self.received += 1;
        let Some(stamp) = payload::read(payload) else {
            self.foreign += 1;
            return;
        };
        if stamp.publisher >= MAX_PUBLISHERS {
            self.foreign += 1;
            return;
        }
        let p = stamp.publisher as usize;
        if self.per_publisher.len() <= p {
            self.per_publisher.resize_with(p + 1, SeqSet::default);
            self.last_seq.resize(p + 1, None);
        }
        let (Some(set), Some(last)) = (self.per_publisher.get_mut(p), self.last_seq.get_mut(p))
        else {
            self.foreign += 1;
            return;
        };
        match set.insert(stamp.seq) {
            Insert::New => {}
            Insert::Duplicate => self.duplicates += 1,
            Insert::OutOfRange => {
                self.foreign += 1;
                return;
            }
        }
        if last.is_some_and(|l| stamp.seq < l) {
            self.out_of_order += 1;
        }
        *last = Some(last.map_or(stamp.seq, |l| l.max(stamp.seq)));
        match now_ns.checked_sub(stamp.sent_ns) {
            Some(ns) => {
                let _ = self.latency.record(ns.clamp(1, MAX_LATENCY_NS));
            }
            None => self.clock_skew += 1,
        }
    }

    /// The numbers received from `publisher`, if any.
    pub fn seqs(&self, publisher: u32) -> Option<&SeqSet> {
        self.per_publisher.get(publisher as usize)
    }

    /// Messages missing from the gaps in each publisher's sequence: the loss count when what the
    /// publishers sent is not known (they ran in another process).
    pub fn gaps(&self) -> u64 {
        self.per_publisher.iter().map(SeqSet::gaps).sum()
    }

    /// Distinct messages received, all publishers together.
    pub fn distinct(&self) -> u64 {
        self.per_publisher.iter().map(SeqSet::distinct).sum()
    }
}

/// Loss and duplicate counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries expected: for each group, the sum of what its publishers sent.
    pub expected: u64,
    /// Distinct messages delivered to the groups.
    pub delivered_distinct: u64,
    /// Expected but never delivered.
    pub lost: u64,
    /// Delivered more than once (within a member, or to two members of one group).
    pub duplicates: u64,
    /// Delivered out of order (within one member).
    pub out_of_order: u64,
}

impl Tally {
    /// Adds the figures of one group of subscribers that, together, should receive every message
    /// of the publishers in `expected_from` exactly once: one subscriber on its own, or the
    /// members of a shared subscription. `sent` is indexed by publisher id.
    pub fn add_group(&mut self, members: &[&Receiver], expected_from: &[u32], sent: &[u64]) {
        for m in members {
            self.duplicates += m.duplicates;
            self.out_of_order += m.out_of_order;
        }
        for &p in expected_from {
            let sent_p = sent.get(p as usize).copied().unwrap_or(0);
            let mut union = SeqSet::default();
            for m in members {
                if let Some(set) = m.seqs(p) {
                    self.duplicates += set.union_into(&mut union);
                }
            }
            self.expected += sent_p;
            self.delivered_distinct += union.distinct();
            self.lost += sent_p.saturating_sub(union.distinct());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::{HEADER_LEN, Stamp, write};

    fn rx() -> Receiver {
        Receiver::new(new_histogram().unwrap())
    }

    fn msg(publisher: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 10];
        write(
            &mut p,
            Stamp {
                publisher,
                seq,
                sent_ns,
            },
        );
        p
    }

    #[test]
    fn seqset_counts_distinct_and_duplicates() {
        let mut s = SeqSet::default();
        assert_eq!(s.insert(0), Insert::New);
        assert_eq!(s.insert(200), Insert::New);
        assert_eq!(s.insert(200), Insert::Duplicate);
        assert_eq!(s.insert(MAX_SEQ), Insert::OutOfRange);
        assert_eq!(s.distinct(), 2);
        assert_eq!(s.gaps(), 199);
    }

    #[test]
    fn union_reports_overlap_as_duplicates() {
        let mut a = SeqSet::default();
        let mut b = SeqSet::default();
        for i in 0..100 {
            a.insert(i);
        }
        for i in 90..300 {
            b.insert(i);
        }
        let mut u = SeqSet::default();
        assert_eq!(a.union_into(&mut u), 0);
        assert_eq!(b.union_into(&mut u), 10);
        assert_eq!(u.distinct(), 300);
        assert_eq!(u.gaps(), 0);
    }

    #[test]
    fn receiver_detects_loss_duplicates_and_reordering_per_publisher() {
        let mut r = rx();
        for seq in [0, 1, 3, 2, 3, 5] {
            r.record(&msg(0, seq, 1_000), 51_000);
        }
        r.record(&msg(1, 0, 1_000), 2_000);
        r.record(b"not a bench message", 2_000);
        assert_eq!(r.received, 8);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.out_of_order, 1); // 2 after 3; the second 3 is a duplicate, not reordered
        assert_eq!(r.foreign, 1);
        assert_eq!(r.gaps(), 1); // 4 is missing
        assert_eq!(r.distinct(), 6);
        assert_eq!(r.latency.len(), 7);
        assert_eq!(r.latency.max(), r.latency.highest_equivalent(50_000));
    }

    #[test]
    fn latency_percentiles_come_from_the_stamps() {
        let mut r = rx();
        for i in 0..1000u64 {
            // latencies 1 µs .. 1000 µs
            r.record(&msg(0, i, 0), (i + 1) * 1_000);
        }
        let p50 = r.latency.value_at_quantile(0.5);
        let p99 = r.latency.value_at_quantile(0.99);
        assert!((499_000..=501_000).contains(&p50), "p50 {p50}");
        assert!((989_000..=991_000).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn sent_after_received_counts_as_clock_skew_not_latency() {
        let mut r = rx();
        r.record(&msg(0, 0, 5_000), 1_000);
        assert_eq!(r.clock_skew, 1);
        assert_eq!(r.latency.len(), 0);
    }

    #[test]
    fn tally_of_single_subscribers_counts_each_expected_message() {
        // fan-in: one subscriber expecting publishers 0 and 1, which sent 5 and 3.
        let mut r = rx();
        for seq in 0..5 {
            r.record(&msg(0, seq, 0), 1);
        }
        for seq in [0, 2] {
            r.record(&msg(1, seq, 0), 1);
        }
        let mut t = Tally::default();
        t.add_group(&[&r], &[0, 1], &[5, 3]);
        assert_eq!(t.expected, 8);
        assert_eq!(t.delivered_distinct, 7);
        assert_eq!(t.lost, 1);
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn tally_of_a_shared_group_counts_across_members() {
        // shared: two members split one publisher's 10 messages; message 4 reaches both and
        // message 9 reaches neither.
        let mut a = rx();
        let mut b = rx();
        for seq in [0, 2, 4, 6, 8] {
            a.record(&msg(0, seq, 0), 1);
        }
        for seq in [1, 3, 4, 5, 7] {
            b.record(&msg(0, seq, 0), 1);
        }
        let mut t = Tally::default();
        t.add_group(&[&a, &b], &[0], &[10]);
        assert_eq!(t.expected, 10);
        assert_eq!(t.delivered_distinct, 9);
        assert_eq!(t.lost, 1);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.out_of_order, 0);
    }

    #[test]
    fn tally_of_fanout_expects_every_message_at_every_subscriber() {
        let mut full = rx();
        let mut half = rx();
        for seq in 0..4 {
            full.record(&msg(0, seq, 0), 1);
            if seq % 2 == 0 {
                half.record(&msg(0, seq, 0), 1);
            }
        }
        let mut t = Tally::default();
        t.add_group(&[&full], &[0], &[4]);
        t.add_group(&[&half], &[0], &[4]);
        assert_eq!(t.expected, 8);
        assert_eq!(t.lost, 2);
    }
}
