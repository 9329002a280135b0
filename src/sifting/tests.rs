use super::*;
use proptest::prelude::*;
use rand::SeedableRng;

/// (Alice key, key classes, Bob key, Alice test, test classes, Bob test).
type Sifted = (Vec<bool>, Vec<u8>, Vec<bool>, Vec<bool>, Vec<u8>, Vec<bool>);

fn naive(a: &[(bool, bool, u8)], b: &[(bool, bool)]) -> Sifted {
    let (mut ka, mut kc, mut kb, mut ta, mut tc, mut tb) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (&(ab, av, ac), &(bb, bv)) in a.iter().zip(b) {
        if ab == bb {
            if ab {
                ta.push(av);
                tc.push(ac);
                tb.push(bv);
            } else {
                ka.push(av);
                kc.push(ac);
                kb.push(bv);
            }
        }
    }
    (ka, kc, kb, ta, tc, tb)
}

fn classes_of(p: &ClassPlanes) -> Vec<u8> {
    (0..p.len())
        .map(|i| u8::from(p.int0.get(i)) | (u8::from(p.int1.get(i)) << 1))
        .collect()
}

proptest! {
    /// Both parties' packed sifting equals a per-bit reference, on every kernel.
    #[test]
    fn sifting_matches_reference(data in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u8..3, any::<bool>(), any::<bool>()), 0..500)) {
        let a: Vec<(bool, bool, u8)> = data.iter().map(|d| (d.0, d.1, d.2)).collect();
        let b: Vec<(bool, bool)> = data.iter().map(|d| (d.3, d.4)).collect();
        let (ka, kc, kb, ta, tc, tb) = naive(&a, &b);
        for k in Kernels::available() {
            let alice = AliceSymbols {
                basis: BitVec::from_bools(&a.iter().map(|x| x.0).collect::<Vec<_>>()),
                value: BitVec::from_bools(&a.iter().map(|x| x.1).collect::<Vec<_>>()),
                classes: ClassPlanes {
                    int0: BitVec::from_bools(&a.iter().map(|x| x.2 & 1 == 1).collect::<Vec<_>>()),
                    int1: BitVec::from_bools(&a.iter().map(|x| x.2 & 2 == 2).collect::<Vec<_>>()),
                },
            };
            let mut bob = BobDetections::default();
            for (i, &(bb, bv)) in b.iter().enumerate() {
                bob.push(i as u64, Squashed { basis: Basis::from_bit(bb), value: bv, multi: false, cross_basis: false });
            }
            let (matched, reply, sa) = sift_alice(&k, &alice, &bob.basis);
            let sb = sift_bob(&k, &bob, &matched, &reply).unwrap();
            prop_assert_eq!(sa.key.to_bools(), ka.clone());
            prop_assert_eq!(classes_of(&sa.key_classes), kc.clone());
            prop_assert_eq!(sb.key.to_bools(), kb.clone());
            prop_assert_eq!(&sb.key_classes, &sa.key_classes);
            prop_assert_eq!(sa.test.to_bools(), ta.clone());
            prop_assert_eq!(classes_of(&sa.test_classes), tc.clone());
            prop_assert_eq!(sb.test.to_bools(), tb.clone());
            prop_assert_eq!(&sb.test_classes, &sa.test_classes);
        }
    }
}

#[test]
fn squashing_rule() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let z0 = DetectorState {
        basis: Basis::Z,
        value: 0,
    };
    let z1 = DetectorState {
        basis: Basis::Z,
        value: 1,
    };
    let x1 = DetectorState {
        basis: Basis::X,
        value: 1,
    };
    assert_eq!(squash_slot(&[], &mut rng), None);
    let s = squash_slot(&[x1], &mut rng).unwrap();
    assert_eq!((s.basis, s.value, s.multi), (Basis::X, true, false));
    // Same-basis double clicks: that basis, values roughly balanced.
    let mut ones = 0;
    for _ in 0..2000 {
        let s = squash_slot(&[z0, z1], &mut rng).unwrap();
        assert_eq!(s.basis, Basis::Z);
        assert!(s.multi && !s.cross_basis);
        ones += u32::from(s.value);
    }
    assert!((800..1200).contains(&ones), "{ones}");
    // Cross-basis: both bases occur.
    let mut x = 0;
    for _ in 0..2000 {
        let s = squash_slot(&[z0, x1], &mut rng).unwrap();
        assert!(s.cross_basis);
        x += u32::from(s.basis == Basis::X);
    }
    assert!((800..1200).contains(&x), "{x}");
}

#[test]
fn sift_bob_rejects_inconsistent_reply() {
    let k = Kernels::portable();
    let mut bob = BobDetections::default();
    bob.push(
        3,
        Squashed {
            basis: Basis::Z,
            value: true,
            multi: false,
            cross_basis: false,
        },
    );
    let r = sift_bob(&k, &bob, &BitVec::ones(2), &ClassPlanes::default());
    assert!(r.is_err());
    let r = sift_bob(
        &k,
        &bob,
        &BitVec::ones(1),
        &ClassPlanes {
            int0: BitVec::ones(1),
            int1: BitVec::ones(1),
        },
    );
    assert!(r.is_err());
}
