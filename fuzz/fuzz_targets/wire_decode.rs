//! Arbitrary bytes through the automerge-repo frame decoder: never a panic, and whatever
//! decodes re-encodes to something that decodes to the same message.
#![no_main]

use firemode_sync_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::decode(data) {
        let again = wire::decode(&wire::encode(&msg)).expect("our own encoding decodes");
        assert_eq!(again, msg);
    }
});
