//! chatvault-storage-vector (work in progress).
