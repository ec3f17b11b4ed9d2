//! chatvault-query (work in progress).
