//! retained (in progress)
