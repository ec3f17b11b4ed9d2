//! chatvault-embed (work in progress).
