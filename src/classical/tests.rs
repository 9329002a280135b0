use super::*;
use crate::bits::BitVec;
use proptest::prelude::*;

fn samples() -> Vec<Message> {
    let bits = BitVec::from_bools(&[true, false, true, true, false, false, true, false, true]);
    vec![
        Message::Hello {
            version_min: 2,
            version_max: 7,
            protocol: "e91".into(),
            run_id: *b"abcdefgh",
            total_slots: 1 << 40,
            settings: "{\"x\":1}".into(),
        },
        Message::HelloAck {
            version: 2,
            run_id: [7; 8],
            block_bits: 1 << 20,
            needs_sync: true,
        },
        Message::SiftAnnounce {
            slots: vec![0, 5, 5000, u64::MAX / 2],
            bases: BitVec::from_bools(&[true, false, true, true]),
            last: true,
        },
        Message::SiftReply {
            matched: bits.clone(),
            int0: BitVec::new(),
            int1: BitVec::ones(3),
        },
        Message::EstimationRequest {
            seed: [9; 32],
            sample_size: 9,
            sample_bits: bits.clone(),
            test_bits: BitVec::zeros(70),
        },
        Message::EstimationReply {
            sample_errors: 3,
            test_errors: vec![1, 2, u64::MAX],
        },
        Message::EstimationReply {
            sample_errors: 0,
            test_errors: vec![],
        },
        Message::CoincidenceAnnounce {
            slots: vec![3, 9, 27],
            setting0: BitVec::from_bools(&[true, false, true]),
            setting1: BitVec::from_bools(&[false, true, false]),
            last: false,
        },
        Message::CoincidenceReply {
            matched: BitVec::from_bools(&[true, false, true]),
            setting0: BitVec::zeros(2),
            setting1: BitVec::ones(2),
        },
        Message::PostselectAnnounce {
            slots: vec![1, 2, 1 << 50],
            last: true,
        },
        Message::PostselectReply {
            keep: BitVec::from_bools(&[true, true, false]),
        },
        Message::KeyConfirm {
            hash_key: 5,
            tag: u64::MAX,
        },
        Message::KeyConfirmResult { ok: true },
        Message::CascadeStart {
            seed: [1; 32],
            block_sizes: vec![37, 74, 148, 296],
            biconf_clean_rounds: 10,
        },
        Message::CascadeTopQuery {
            pass: 3,
            frames: BitVec::ones(5),
        },
        Message::ParityQuery {
            ranges: vec![
                ParityRange {
                    frame: 2,
                    pass: 1,
                    block: 7,
                    start: 10,
                    end: 20,
                },
                ParityRange {
                    frame: 0,
                    pass: 0,
                    block: 0,
                    start: 0,
                    end: 1,
                },
            ],
        },
        Message::ParityReply {
            parities: bits.clone(),
        },
        Message::CascadeDone,
        Message::LdpcSyndromes {
            seed: [3; 32],
            code: "qc-r0.80-n16384".into(),
            punctured: 64,
            shortened: vec![0, 100],
            syndromes: vec![BitVec::ones(200), BitVec::zeros(200)],
        },
        Message::LdpcStatus {
            failed: BitVec::from_bools(&[false, true]),
        },
        Message::LdpcReveal {
            values: BitVec::ones(5),
        },
        Message::VerifyTags {
            keys: vec![1, 2],
            tags: vec![3, u64::MAX],
        },
        Message::VerifyResult {
            ok: BitVec::ones(2),
        },
        Message::AmplifySeed {
            input_bits: 100,
            output_bits: 40,
            seed: BitVec::ones(139),
        },
        Message::Abort {
            security: true,
            reason: "QBER 25 %".into(),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let frame = m.encode();
        assert_eq!(Message::decode(&frame).unwrap(), m, "{}", m.name());
        // Every strict prefix is rejected, never a panic.
        for cut in 0..frame.len() {
            assert!(
                Message::decode(&frame[..cut]).is_err(),
                "{} cut at {cut}",
                m.name()
            );
        }
        // Trailing garbage is rejected.
        let mut longer = frame.clone();
        longer.push(0);
        assert!(Message::decode(&longer).is_err());
    }
}

#[test]
fn disclosures_count_the_disclosed_bits() {
    use crate::ledger::LeakageLedger;
    let mut l = LeakageLedger::default();
    for m in samples() {
        for d in m.disclosures() {
            l.record(d);
        }
    }
    assert_eq!(l.error_correction_bits, 9 + 2 * (200 - 64) + 5); // parities, syndromes − punctured, reveals
    // Bob's key-dependent replies: an error parity per parity, a status per frame, a verdict
    // per frame.
    assert_eq!(l.reply_bits, 9 + 2 + 2);
    assert_eq!(l.verification_bits, 128); // two 64-bit tags
    assert_eq!(l.confirmation_bits, 64); // padded, not subtracted
    assert_eq!(l.qber_sample_bits, 9);
    assert_eq!(l.test_basis_bits, 70);
    assert_eq!(l.subtracted(), 9 + 272 + 5 + 13 + 128);
}

#[test]
fn channel_records_disclosure_on_both_sides_and_relays_aborts() {
    use crate::ledger::LeakageLedger;
    let (a, b) = transport::in_memory::pair();
    let (mut a, mut b) = (
        ClassicalChannel::new(Box::new(a)),
        ClassicalChannel::new(Box::new(b)),
    );
    let (mut la, mut lb) = (LeakageLedger::default(), LeakageLedger::default());
    let m = Message::ParityReply {
        parities: BitVec::ones(17),
    };
    a.send(&m, &mut la).unwrap();
    assert_eq!(b.recv(&mut lb).unwrap(), m);
    assert_eq!(la, lb);
    assert_eq!(la.error_correction_bits, 17);
    assert_eq!(la.reply_bits, 17);
    assert_eq!(a.stats().bytes_sent, b.stats().bytes_received);
    a.abort(&crate::error::Error::Aborted(
        crate::error::AbortReason::PeerAborted {
            message: "x".into(),
        },
    ));
    assert!(matches!(
        b.recv(&mut lb),
        Err(crate::error::Error::Aborted(_))
    ));
    drop(a);
    assert!(b.recv(&mut lb).unwrap_err().is_secondary());
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::decode(&bytes);
        let mut framed = vec![1u8];
        framed.extend_from_slice(&bytes);
        let _ = Message::decode(&framed);
    }
}
