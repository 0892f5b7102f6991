"""Customer privacy: keyed ids, the store's id mode, the erasure list, retention."""
