//! Domain rules with no I/O: what the HTTP layer, the hub and the projection share.

pub mod reference;
