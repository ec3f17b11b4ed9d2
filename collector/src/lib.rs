//! chatvault-collector (work in progress).
