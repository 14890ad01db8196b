"""The offline demo: a synthetic task and a tiny frozen T5 that the project makes ready itself."""
