//! What a loaded session document costs in memory, piece by piece: RSS deltas over N documents
//! of 20 items (the sync bench's shape). Run from the repository root:
//!
//!     cargo run --release -p firemode-sync-core --example memory_per_document -- 2000
//!
//! Reported in docs/benchmarks.md, "Hub cost per edit, profiled". The system allocator, not the
//! server's mimalloc: figures are indicative of automerge's own structures.
use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::{ActorId, Automerge};
use firemode_sync_core::session::ProjectionCache;
use firemode_sync_core::{create_session_document, ItemInit, SessionInit};
use uuid::Uuid;

fn rss_kib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let items: Vec<ItemInit> = (0..20)
        .map(|_| ItemInit {
            asset_id: Uuid::new_v4(),
            rule_code: "AS1851-10-6M-EXT".into(),
        })
        .collect();
    let mut saved = Vec::new();
    for _ in 0..n {
        let id = Uuid::new_v4();
        let init = SessionInit {
            session_id: id,
            building_id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            frequency: "six_monthly".into(),
            name: "probe".into(),
            items: items.clone(),
        };
        let d = create_session_document(&init, ActorId::random(), 1_700_000_000).unwrap();
        saved.push(d.save());
    }
    println!("saved doc {} bytes", saved[0].len());
    let r0 = rss_kib();
    let mut docs: Vec<Automerge> = saved.iter().map(|b| Automerge::load(b).unwrap()).collect();
    let r1 = rss_kib();
    println!("automerge doc loaded: {:.1} KiB", (r1 - r0) / n as f64);
    let ra = rss_kib();
    let inc: Vec<Automerge> = saved
        .iter()
        .map(|b| {
            let mut d = Automerge::new();
            d.load_incremental(b).unwrap();
            d
        })
        .collect();
    let rb = rss_kib();
    println!("new + load_incremental: {:.1} KiB", (rb - ra) / n as f64);
    let ch: Vec<Automerge> = docs
        .iter()
        .map(|d| {
            let mut x = Automerge::new();
            x.apply_changes(d.get_changes(&[])).unwrap();
            x
        })
        .collect();
    let rc = rss_kib();
    println!("new + apply_changes: {:.1} KiB", (rc - rb) / n as f64);
    let forks: Vec<Automerge> = docs.iter().map(|d| d.fork()).collect();
    let rd = rss_kib();
    println!("fork: {:.1} KiB", (rd - rc) / n as f64);
    std::hint::black_box((&inc, &ch, &forks));
    let r1 = rss_kib();
    let caches: Vec<ProjectionCache> = docs.iter().map(ProjectionCache::new).collect();
    let r2 = rss_kib();
    println!("projection cache: {:.1} KiB", (r2 - r1) / n as f64);
    // Two clients per document, each starting empty: the server keeps one sync state per
    // client. Client documents are built first so that only the server's states are measured.
    let mut clients: Vec<(Automerge, sync::State)> = (0..2 * n)
        .map(|_| (Automerge::new(), sync::State::new()))
        .collect();
    let mut states: Vec<sync::State> = (0..2 * n).map(|_| sync::State::new()).collect();
    let mut first_msg = 0;
    // Sync messages are generated and applied; the client's copies grow too, so measure the
    // clients after syncing them against a separate copy first.
    let r2b = rss_kib();
    for (i, d) in docs.iter_mut().enumerate() {
        for k in 0..2 {
            let (c, cs) = &mut clients[2 * i + k];
            let s = &mut states[2 * i + k];
            for _ in 0..10 {
                let mut any = false;
                if let Some(m) = c.generate_sync_message(cs) {
                    d.receive_sync_message(s, m).unwrap();
                    any = true;
                }
                if let Some(m) = d.generate_sync_message(s) {
                    let e = m.encode();
                    first_msg = first_msg.max(e.len());
                    c.receive_sync_message(cs, sync::Message::decode(&e).unwrap())
                        .unwrap();
                    any = true;
                }
                if !any {
                    break;
                }
            }
        }
    }
    let r3 = rss_kib();
    println!("largest server message {first_msg} bytes");
    println!(
        "server doc + 2 states + 2 client docs after sync: {:.1} KiB per document",
        (r3 - r2b) / n as f64
    );
    let states_only: Vec<sync::State> = states.to_vec();
    let r4 = rss_kib();
    println!(
        "a clone of the 2 server sync states: {:.2} KiB per document",
        (r4 - r3) / n as f64
    );
    std::hint::black_box(&states_only);
    std::hint::black_box((&docs, &caches, &states));
}
