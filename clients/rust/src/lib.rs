//! firemode-client
