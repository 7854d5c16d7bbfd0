//! geo classification.
