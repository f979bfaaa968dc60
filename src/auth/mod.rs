//! Authentication and access-control sources (in progress).
