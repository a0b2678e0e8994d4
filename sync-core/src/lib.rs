//! FireMode sync core (sans-IO).
