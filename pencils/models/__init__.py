"""Problems built on the engine: each states its quantity as matrix expressions and calls it."""
