//! chatvault-benches (work in progress).
