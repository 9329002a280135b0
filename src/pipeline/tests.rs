use super::*;
use crate::error::ConfigError;

struct N(u64, u64);
impl Item for N {
    fn seq(&self) -> u64 {
        self.0
    }
    fn size_bits(&self) -> u64 {
        1
    }
}

struct Count {
    next: u64,
    end: u64,
}
impl Source for Count {
    type Out = N;
    fn name(&self) -> &'static str {
        "count"
    }
    fn next(&mut self) -> Result<Option<N>> {
        if self.next == self.end {
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(N(self.next - 1, self.next - 1)))
    }
}

struct Square {
    fail_at: Option<u64>,
    slow_odd: bool,
}
impl Stage for Square {
    type In = N;
    type Out = N;
    fn name(&self) -> &'static str {
        "square"
    }
    fn process(&mut self, n: N) -> Result<N> {
        if Some(n.0) == self.fail_at {
            return Err(ConfigError::invalid("test", format!("failing at {}", n.0)).into());
        }
        if self.slow_odd && n.0 % 2 == 1 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(N(n.0, n.1 * n.1))
    }
}

#[test]
fn pool_preserves_order_and_counts() {
    let mut p = Pipeline::new(2);
    let f = p.source(Count { next: 0, end: 200 });
    let f = p.pool(
        f,
        (0..3)
            .map(|_| Square {
                fail_at: None,
                slow_odd: true,
            })
            .collect(),
    );
    let h = p.sink(f, "collect", Vec::new(), |v: &mut Vec<u64>, n: N| {
        v.push(n.1);
        Ok(())
    });
    let (got, r) = h.join().unwrap();
    r.unwrap();
    let metrics = p.join().unwrap();
    assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
    let sq = metrics.iter().find(|m| m.name == "square").unwrap();
    assert_eq!((sq.items, sq.workers), (200, 3));
}

#[test]
fn a_pool_resumes_at_any_first_sequence_number() {
    // Before: the merge waited for item 0 and dropped everything of a resumed run.
    let mut p = Pipeline::new(2).starting_at(50);
    let f = p.source(Count { next: 50, end: 120 });
    let squares = (0..3)
        .map(|_| Square {
            fail_at: None,
            slow_odd: true,
        })
        .collect();
    let f = p.pool(f, squares);
    let h = p.sink(f, "collect", Vec::new(), |v: &mut Vec<u64>, n: N| {
        v.push(n.1);
        Ok(())
    });
    let (got, r) = h.join().unwrap();
    r.unwrap();
    p.join().unwrap();
    assert_eq!(got, (50..120u64).map(|x| x * x).collect::<Vec<_>>());
    // A sequence that does not start where the pipeline says is an error, not a silent loss.
    let mut p = Pipeline::new(2);
    let f = p.source(Count { next: 5, end: 9 });
    let squares = (0..2)
        .map(|_| Square {
            fail_at: None,
            slow_odd: false,
        })
        .collect();
    let f = p.pool(f, squares);
    let h = p.sink(f, "collect", Vec::new(), |v: &mut Vec<u64>, n: N| {
        v.push(n.1);
        Ok(())
    });
    let _ = h.join().unwrap();
    assert!(p.join().is_err());
}

#[test]
fn a_failing_stage_stops_the_pipeline_with_its_error() {
    let mut p = Pipeline::new(1);
    let f = p.source(Count {
        next: 0,
        end: 1_000_000,
    });
    let f = p.stage(
        f,
        Square {
            fail_at: Some(10),
            slow_odd: false,
        },
    );
    let h = p.sink(f, "collect", 0u64, |c: &mut u64, _n: N| {
        *c += 1;
        Ok(())
    });
    let (count, r) = h.join().unwrap();
    r.unwrap();
    assert_eq!(count, 10);
    let err = p.join().unwrap_err();
    assert!(err.to_string().contains("failing at 10"), "{err}");
}

/// A source that counts what it produced, so a test can see how far it ran ahead.
struct Watched {
    next: u64,
    end: u64,
    produced: Arc<std::sync::atomic::AtomicU64>,
}
impl Source for Watched {
    type Out = N;
    fn name(&self) -> &'static str {
        "watched"
    }
    fn next(&mut self) -> Result<Option<N>> {
        if self.next == self.end {
            return Ok(None);
        }
        self.next += 1;
        self.produced
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(N(self.next - 1, 0)))
    }
}

/// A stalled consumer stops the source after a bounded number of items (the queues' and
/// stages' capacity), however long the input: the memory of a pipeline whose key sink or
/// network stalls stays bounded. Released, every item arrives in order.
#[test]
fn a_stalled_sink_bounds_the_items_in_flight() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    for (capacity, workers) in [(1usize, 1usize), (2, 3)] {
        let produced = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let mut p = Pipeline::new(capacity);
        let f = p.source(Watched {
            next: 0,
            end: 5_000,
            produced: produced.clone(),
        });
        let f = p.stage(
            f,
            Square {
                fail_at: None,
                slow_odd: false,
            },
        );
        let f = p.pool(
            f,
            (0..workers)
                .map(|_| Square {
                    fail_at: None,
                    slow_odd: false,
                })
                .collect(),
        );
        let gate = open.clone();
        let h = p.sink(f, "stalled", 0u64, move |n: &mut u64, item: N| {
            while !gate.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(item.0, *n);
            *n += 1;
            Ok(())
        });
        // Wait until the source stops advancing.
        let mut last = u64::MAX;
        for _ in 0..400 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let now = produced.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        let in_flight = produced.load(Ordering::SeqCst);
        // Each queue holds `capacity` items and each thread one more; a pool has a queue and
        // a thread per worker plus its merge.
        let bound = (capacity as u64 + 1) * (4 + 2 * workers as u64) + 2;
        assert!(
            in_flight <= bound,
            "capacity {capacity}, {workers} workers: {in_flight} items produced with the sink stalled (bound {bound})"
        );
        open.store(true, Ordering::SeqCst);
        let (n, r) = h.join().unwrap();
        r.unwrap();
        p.join().unwrap();
        assert_eq!(n, 5_000);
    }
}
