"""Planning a run before renting a slice: TPU chips and slices, AOT compilation of the real steps, FLOP counts."""
