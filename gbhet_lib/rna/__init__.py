"""RNA encoding: gene identifiers, normalisation, gene tokens, the cluster-token transformer, evaluation."""
