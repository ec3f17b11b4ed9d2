//! Checking that an embedder can write to a collection before any vector is computed.

use chatvault_core::{CollectionSpec, Embedder, Error, Result};

/// Checks that `embedder` produces vectors the collection described by `spec` accepts: same
/// dimension, same model id. Call it when wiring an embedder to an existing collection, so a
/// mismatch is reported once, clearly, instead of as a failure on every upsert.
///
/// # Errors
/// `Conflict` naming both dimensions or both model ids.
///
/// ```
/// use chatvault_core::{CollectionSpec, HashingEmbedder};
/// use chatvault_embed::check_collection;
///
/// let embedder = HashingEmbedder::new(384).unwrap();
/// let spec = CollectionSpec { dimension: 768, model_id: "sentence-transformers/all-mpnet-base-v2".into() };
/// let err = check_collection(&embedder, &spec).unwrap_err();
/// assert!(err.to_string().contains("384"));
/// ```
pub fn check_collection(embedder: &dyn Embedder, spec: &CollectionSpec) -> Result<()> {
    if embedder.dimension() != spec.dimension {
        return Err(Error::conflict(format!(
            "the embedder {:?} produces {}-dimensional vectors but the collection holds {}-dimensional \
             vectors of {:?}: use the collection's model, or re-embed into a new collection",
            embedder.model_id(),
            embedder.dimension(),
            spec.dimension,
            spec.model_id
        )));
    }
    if embedder.model_id() != spec.model_id {
        return Err(Error::conflict(format!(
            "the embedder's model {:?} differs from the collection's model {:?}: their vectors are \
             not comparable",
            embedder.model_id(),
            spec.model_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatvault_core::{ErrorKind, HashingEmbedder};

    #[test]
    fn mismatches_are_conflicts() {
        let e = HashingEmbedder::new(8).unwrap();
        let same = CollectionSpec {
            dimension: 8,
            model_id: e.model_id().to_string(),
        };
        check_collection(&e, &same).unwrap();
        let other_model = CollectionSpec {
            dimension: 8,
            model_id: "m".into(),
        };
        assert_eq!(
            check_collection(&e, &other_model).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        let other_dim = CollectionSpec {
            dimension: 384,
            model_id: e.model_id().to_string(),
        };
        let err = check_collection(&e, &other_dim).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.to_string().contains("8-dimensional"), "{err}");
    }
}
