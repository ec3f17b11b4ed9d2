//! chatvault-storage-postgres (work in progress).
