"""prompt_tuning: soft prompts on frozen T5 1.1 models, in JAX/Flax, with a T5X-compatible runtime."""
