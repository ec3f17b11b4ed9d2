//! Test kit (feature `testing`): conformance suites, in-memory reference stores and helpers.
