use super::*;
use proptest::prelude::*;

fn bools(max: usize) -> impl Strategy<Value = Vec<bool>> {
    proptest::collection::vec(any::<bool>(), 0..max)
}

#[test]
fn boundary_lengths_round_trip_bytes() {
    for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 1000] {
        let b: Vec<bool> = (0..len).map(|i| (i * 7 + 3) % 5 < 2).collect();
        let v = BitVec::from_bools(&b);
        assert_eq!(v.len(), len);
        assert_eq!(v.to_bools(), b);
        let bytes = v.to_bytes_le();
        assert_eq!(bytes.len(), len.div_ceil(8));
        assert_eq!(BitVec::from_bytes_le(&bytes, len), v);
        // Bit i is bit i%8 of byte i/8.
        for i in 0..len {
            assert_eq!((bytes[i / 8] >> (i % 8)) & 1 == 1, b[i]);
        }
    }
    assert_eq!(BitVec::ones(65).count_ones(&Kernels::portable()), 65);
}

proptest! {
    #[test]
    fn extend_and_slice_match_bools(a in bools(300), b in bools(300), s in 0usize..300, e in 0usize..300) {
        let mut v = BitVec::from_bools(&a);
        v.extend_from(&BitVec::from_bools(&b));
        let mut expect = a.clone();
        expect.extend_from_slice(&b);
        prop_assert_eq!(v.to_bools(), expect.clone());
        let (s, e) = (s.min(expect.len()), e.min(expect.len()));
        let (s, e) = (s.min(e), s.max(e));
        prop_assert_eq!(v.slice(s, e).to_bools(), expect[s..e].to_vec());
        let par = expect[s..e].iter().filter(|&&x| x).count() % 2 == 1;
        prop_assert_eq!(v.parity_range(s, e), par);
    }

    #[test]
    fn compacted_matches_filter(a in bools(400), seed in any::<u64>()) {
        let mask: Vec<bool> = (0..a.len()).map(|i| (seed.rotate_left(i as u32 % 64) ^ i as u64) & 1 == 1).collect();
        let expect: Vec<bool> = a.iter().zip(&mask).filter(|(_, m)| **m).map(|(x, _)| *x).collect();
        for k in Kernels::available() {
            let v = BitVec::from_bools(&a).compacted(&k, &BitVec::from_bools(&mask));
            prop_assert_eq!(v.to_bools(), expect.clone());
            prop_assert_eq!(v.words().len(), words_for(expect.len()));
        }
    }

    #[test]
    fn truncate_and_push(a in bools(200), t in 0usize..200) {
        let mut v = BitVec::from_bools(&a);
        v.truncate(t);
        let t = t.min(a.len());
        prop_assert_eq!(v.to_bools(), a[..t].to_vec());
        v.push(true);
        prop_assert!(v.get(t));
        prop_assert_eq!(v.ones_iter().collect::<Vec<_>>(),
            a[..t].iter().chain([true].iter()).enumerate().filter(|(_, x)| **x).map(|(i, _)| i).collect::<Vec<_>>());
    }
}
