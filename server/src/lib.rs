//! firemode-server
