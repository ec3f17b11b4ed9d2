//! chatvault-examples (work in progress).
