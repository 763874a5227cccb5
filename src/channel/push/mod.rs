//! Shared push plumbing: HTTP/2 pool, JWT signing, message rendering (being written).
