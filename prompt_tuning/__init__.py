"""prompt_tuning: soft prompts on frozen T5 1.1 models, in JAX/Flax, with a T5X-compatible runtime."""
from prompt_tuning import host as _host

# Before any module of the package starts JAX (see host.py).

_host.leave_out_an_absent_tpu()
