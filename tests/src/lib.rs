//! firemode-tests
