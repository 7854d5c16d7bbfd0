//! network classification.
