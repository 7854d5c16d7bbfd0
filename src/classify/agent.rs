//! agent classification.
