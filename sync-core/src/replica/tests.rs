//! Unit tests of the replica's rules, one at a time (the model test in
//! `tests/replica_model.rs` mixes them).

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT};

use super::*;

fn initial() -> (Automerge, Loaded) {
    let mut doc = Automerge::new();
    doc.set_actor(ActorId::from([9u8; 16]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", 1).unwrap();
    tx.commit();
    let changes = doc
        .get_changes(&[])
        .into_iter()
        .map(|mut c| (c.hash(), c.bytes().into_owned()))
        .collect();
    let loaded = Loaded {
        snapshot: None,
        changes,
        watermark: Watermark(2),
        projected_heads: Some(doc.get_heads()),
    };
    (doc, loaded)
}

fn replica(loaded: Loaded) -> Replica<u32> {
    let (r, effects) = Replica::load(
        Config::new("doc", "server"),
        loaded,
        ActorId::from([0xee; 16]),
        0,
    );
    assert!(
        effects.is_empty(),
        "a replica whose projection is current does nothing at load: {effects:?}"
    );
    r
}

fn peer(key: PeerKey, access: Access) -> PeerInfo {
    PeerInfo {
        key,
        peer_id: format!("u:{key}"),
        access,
        attribution: Attribution {
            device_id: Some(format!("d{key}")),
            ..Default::default()
        },
    }
}

/// A client holding the document, with one edit of its own.
fn client_with_edit(base: &Automerge, key: &str) -> (Automerge, sync::State) {
    let mut c = base.fork();
    let mut tx = c.transaction();
    tx.put(ROOT, key, "x").unwrap();
    tx.commit();
    (c, sync::State::new())
}

/// Run the sync exchange between a client and the replica until the replica asks to persist
/// the client's change (a first message only carries heads); returns those effects.
fn until_persist(
    r: &mut Replica<u32>,
    key: PeerKey,
    client: &mut Automerge,
    state: &mut sync::State,
) -> Vec<Effect<u32>> {
    for round in 0..6u64 {
        let msg = client
            .generate_sync_message(state)
            .expect("client has more to say");
        let mut effects = r.receive(peer(key, Access::ReadWrite), msg.encode(), round);
        effects.extend(r.flush(round));
        if effects.iter().any(|e| matches!(e, Effect::Persist(_))) {
            return effects;
        }
        for e in effects {
            if let Effect::Send { frame, .. } = e {
                if let Ok(crate::wire::Message::Sync { data, .. }) = crate::wire::decode(&frame) {
                    let m = sync::Message::decode(&data).unwrap();
                    client.receive_sync_message(state, m).unwrap();
                }
            }
        }
    }
    panic!("the client's change never reached the replica");
}

fn sends(effects: &[Effect<u32>]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Send { .. }))
        .count()
}

fn persists(effects: &[Effect<u32>]) -> Vec<NewChange> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(c) => Some(c.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn nothing_is_sent_before_the_change_is_persisted() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    let (mut c, mut cs) = client_with_edit(&base, "a");
    let effects = until_persist(&mut r, 1, &mut c, &mut cs);
    let stored = persists(&effects);
    assert_eq!(stored.len(), 1, "the client's change is persisted");
    assert_eq!(stored[0].attribution.device_id.as_deref(), Some("d1"));
    assert_eq!(
        sends(&effects),
        0,
        "no reply while the change is uncommitted"
    );
    assert!(r.has_uncommitted());

    // A second client asks meanwhile: it waits too.
    let (c2, mut cs2) = client_with_edit(&base, "b");
    let msg2 = c2.generate_sync_message(&mut cs2).unwrap();
    let effects = r.receive(peer(2, Access::ReadWrite), msg2.encode(), 2);
    assert!(effects.is_empty(), "queued behind the commit: {effects:?}");

    let effects = r.persisted(Ok(None), 3);
    assert!(
        sends(&effects) >= 2,
        "after the commit, both peers hear from the server"
    );
    assert!(!r.has_uncommitted());
}

#[test]
fn a_failed_persist_acknowledges_nothing_and_discards_the_replica() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    let (mut c, mut cs) = client_with_edit(&base, "a");
    until_persist(&mut r, 1, &mut c, &mut cs);
    struct W;
    impl WriteJob<u32> for W {
        fn apply(self: Box<Self>, _: &mut Automerge) -> u32 {
            7
        }
        fn cancel(self: Box<Self>) -> u32 {
            7
        }
    }
    r.write(
        Write {
            job: Box::new(W),
            attribution: Attribution::default(),
        },
        2,
    );
    let effects = r.persisted(Err("disk full".into()), 3);
    assert_eq!(sends(&effects), 0);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Close {
            peer: 1,
            reason: CloseReason::StorageFailed
        }
    )));
    assert!(effects.iter().any(|e| matches!(e, Effect::Done(7, Err(_)))));
    assert!(matches!(effects.last(), Some(Effect::Stop)));
    assert!(r.is_stopped());
}

#[test]
fn read_only_peers_changes_are_not_stored() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    let (mut c, mut cs) = client_with_edit(&base, "a");
    for round in 0..6 {
        let Some(msg) = c.generate_sync_message(&mut cs) else {
            break;
        };
        let mut effects = r.receive(peer(1, Access::ReadOnly), msg.encode(), round);
        effects.extend(r.flush(round));
        assert!(persists(&effects).is_empty());
        for e in effects {
            if let Effect::Send { frame, .. } = e {
                if let Ok(crate::wire::Message::Sync { data, .. }) = crate::wire::decode(&frame) {
                    c.receive_sync_message(&mut cs, sync::Message::decode(&data).unwrap())
                        .unwrap();
                }
            }
        }
    }
    assert_eq!(r.heads(), base.get_heads());
}

#[test]
fn corrupt_sync_data_closes_only_that_peer_with_a_protocol_reason() {
    let (_, loaded) = initial();
    let mut r = replica(loaded);
    let effects = r.receive(peer(1, Access::ReadWrite), vec![0x42, 0x00, 0x01], 1);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Close {
            peer: 1,
            reason: CloseReason::Protocol(_)
        }
    )));
    assert_eq!(r.peers().count(), 0);
}

#[test]
fn ephemeral_messages_are_relayed_once_to_the_others() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    for k in 1..=3 {
        let c = base.fork();
        let mut s = sync::State::new();
        let m = c.generate_sync_message(&mut s).unwrap();
        r.receive(peer(k, Access::ReadWrite), m.encode(), 0);
    }
    r.flush(0);
    let e = r.ephemeral(&peer(1, Access::ReadWrite), "s".into(), 1, vec![1]);
    assert_eq!(sends(&e), 2);
    let again = r.ephemeral(&peer(1, Access::ReadWrite), "s".into(), 1, vec![1]);
    assert_eq!(sends(&again), 0, "duplicates are dropped");
}

#[test]
fn a_compaction_conflict_merges_the_other_snapshot_before_writing() {
    let (base, mut loaded) = initial();
    // Another node's change, compacted into a snapshot this replica has not seen.
    let mut other = base.fork();
    let mut tx = other.transaction();
    tx.put(ROOT, "other", 1).unwrap();
    tx.commit();
    let other_hash = other.get_heads()[0];
    loaded.projected_heads = None;
    let (mut r, _) = Replica::<u32>::load(
        Config {
            compact_after: 1,
            ..Config::new("doc", "server")
        },
        loaded,
        ActorId::from([0xee; 16]),
        0,
    );
    let effects = r.flush(1_000);
    let Some(Effect::Compact {
        expected_generation,
        covered,
        ..
    }) = effects.iter().find(|e| matches!(e, Effect::Compact { .. }))
    else {
        panic!("compaction expected: {effects:?}");
    };
    assert_eq!(*expected_generation, None);
    let covered = covered.clone();
    let effects = r.compacted(&covered, Ok(Compaction::Conflict), 1_001);
    assert!(effects.iter().any(|e| matches!(e, Effect::LoadSnapshot)));
    let effects = r.snapshot_loaded(
        Ok(Some(Snapshot {
            bytes: other.save(),
            generation: 4,
        })),
        1_002,
    );
    assert!(r.doc().get_change_meta_by_hash(&other_hash).is_some());
    let Some(Effect::Compact {
        expected_generation,
        snapshot,
        ..
    }) = effects.iter().find(|e| matches!(e, Effect::Compact { .. }))
    else {
        panic!("compaction retried: {effects:?}");
    };
    assert_eq!(*expected_generation, Some(4));
    let merged = Automerge::load(snapshot).unwrap();
    assert!(merged.get_change_meta_by_hash(&other_hash).is_some());
}

#[test]
fn a_stale_projection_is_redone_at_load() {
    let (_, mut loaded) = initial();
    loaded.projected_heads = Some(Vec::new());
    let (_, effects) = Replica::<u32>::load(
        Config::new("doc", "server"),
        loaded,
        ActorId::from([0xee; 16]),
        0,
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::Project { .. })));
}

#[test]
fn catching_up_skips_what_it_has_and_merges_a_snapshot_for_what_was_compacted() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    let mut other = base.fork();
    let mut tx = other.transaction();
    tx.put(ROOT, "late", 1).unwrap();
    tx.commit();
    let late = other.get_heads()[0];
    let effects = r.remote_hint(10);
    assert!(matches!(effects[..], [Effect::CatchUp(Watermark(2))]));
    // A second hint while catching up is remembered, not doubled.
    assert!(r.remote_hint(11).is_empty());
    let rows = vec![
        StoredChange {
            hash: base.get_heads()[0],
            bytes: None,
        },
        StoredChange {
            hash: late,
            bytes: None,
        },
    ];
    let effects = r.caught_up(Ok((rows, Watermark(9))), 12);
    assert!(effects.iter().any(|e| matches!(e, Effect::LoadSnapshot)));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::CatchUp(Watermark(9)))));
    assert_eq!(r.watermark(), Watermark(9));
}

/// Deliver every frame addressed to `key` in `effects` to that client; returns how many.
fn deliver(
    effects: &[Effect<u32>],
    key: PeerKey,
    c: &mut Automerge,
    cs: &mut sync::State,
) -> usize {
    let mut n = 0;
    for e in effects {
        if let Effect::Send { peer, frame } = e {
            if *peer != key {
                continue;
            }
            if let Ok(crate::wire::Message::Sync { data, .. }) = crate::wire::decode(frame) {
                c.receive_sync_message(cs, sync::Message::decode(&data).unwrap())
                    .unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_message_that_changes_nothing_is_answered_to_its_sender_only() {
    let (base, loaded) = initial();
    let mut r = replica(loaded);
    let mut clients: Vec<(Automerge, sync::State)> =
        (0..2).map(|_| (base.fork(), sync::State::new())).collect();
    // Both clients sync until neither has anything more to say.
    for round in 0..10u64 {
        let mut quiet = true;
        for (i, (c, cs)) in clients.iter_mut().enumerate() {
            if let Some(m) = c.generate_sync_message(cs) {
                quiet = false;
                r.receive(peer(i as u64 + 1, Access::ReadWrite), m.encode(), round);
            }
        }
        let effects = r.flush(round);
        for (i, (c, cs)) in clients.iter_mut().enumerate() {
            deliver(&effects, i as u64 + 1, c, cs);
        }
        if quiet && sends(&effects) == 0 {
            break;
        }
    }
    // Client 1 edits: its change is persisted, then both peers hear of it.
    let (c1, cs1) = &mut clients[0];
    let mut tx = c1.transaction();
    tx.put(ROOT, "edit", "x").unwrap();
    tx.commit();
    let m = c1.generate_sync_message(cs1).unwrap();
    r.receive(peer(1, Access::ReadWrite), m.encode(), 20);
    let effects = r.flush(20);
    assert_eq!(persists(&effects).len(), 1);
    let effects = r.persisted(Ok(None), 21);
    let to = |k: PeerKey| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Send { peer, .. } if *peer == k))
            .count()
    };
    assert!(to(1) >= 1 && to(2) >= 1, "both peers hear of the commit");
    let (head, tail) = clients.split_at_mut(1);
    deliver(&effects, 1, &mut head[0].0, &mut head[0].1);
    deliver(&effects, 2, &mut tail[0].0, &mut tail[0].1);
    // Client 2 acknowledges (heads only, no change): only client 2 may be answered.
    let (c2, cs2) = &mut clients[1];
    if let Some(m) = c2.generate_sync_message(cs2) {
        r.receive(peer(2, Access::ReadWrite), m.encode(), 22);
        let effects = r.flush(22);
        assert!(persists(&effects).is_empty());
        assert!(
            effects
                .iter()
                .all(|e| !matches!(e, Effect::Send { peer: 1, .. })),
            "a peer whose state and document did not change is not sent anything: {effects:?}"
        );
    }
    assert_eq!(clients[0].0.get_heads(), r.heads());
    assert_eq!(clients[1].0.get_heads(), r.heads());
}
