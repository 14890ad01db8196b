"""Reader of Hugging Face T5 1.1 checkpoints, mapped onto the T5X parameter tree.

Reads `model.safetensors` (single or sharded) lazily, slice by slice, or
`pytorch_model.bin` through `torch.load(weights_only=True)` (torch is
optional). HF stores kernels as [out, in]; T5X as [in, out], so kernels are
transposed views. Hub ids are looked up within PROMPT_TUNING_REMOTE_TIMEOUT
seconds (see storage.py); without an answer, or with HF_HUB_OFFLINE set, the
local Hugging Face cache is used, or the error says how to point at a local
copy. Knows nothing of training.
"""

import json
import os
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax.numpy as jnp
import numpy as np
from absl import logging

from prompt_tuning import storage
from prompt_tuning.checkpoints import arrays
from prompt_tuning.checkpoints.errors import CheckpointError, one_line
from prompt_tuning.models import t5

CONFIG_FILE = 'config.json'
SAFETENSORS_FILE = 'model.safetensors'
TORCH_FILE = 'pytorch_model.bin'

_TOP_LEVEL = {  # HF name -> (T5X path, transposed)
    'shared.weight': ('token_embedder/embedding', False),
    'lm_head.weight': ('decoder/logits_dense/kernel', True),
    'encoder.final_layer_norm.weight': ('encoder/encoder_norm/scale', False),
    'decoder.final_layer_norm.weight': ('decoder/decoder_norm/scale', False),
}
# Copies of `shared.weight` (tied): nothing of their own to read.
_TIED_COPIES = ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight')
_BLOCK = re.compile(r'(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(\w+?)(?:\.(\w+))?\.weight')
_SUBLAYERS = {  # (stack, HF sub-layer index, HF module) -> T5X module
    ('encoder', 0, 'SelfAttention'): 'attention',
    ('encoder', 0, 'layer_norm'): 'pre_attention_layer_norm',
    ('encoder', 1, 'DenseReluDense'): 'mlp',
    ('encoder', 1, 'layer_norm'): 'pre_mlp_layer_norm',
    ('decoder', 0, 'SelfAttention'): 'self_attention',
    ('decoder', 0, 'layer_norm'): 'pre_self_attention_layer_norm',
    ('decoder', 1, 'EncDecAttention'): 'encoder_decoder_attention',
    ('decoder', 1, 'layer_norm'): 'pre_cross_attention_layer_norm',
    ('decoder', 2, 'DenseReluDense'): 'mlp',
    ('decoder', 2, 'layer_norm'): 'pre_mlp_layer_norm',
}
_KERNELS = {'q': 'query', 'k': 'key', 'v': 'value', 'o': 'out', 'wi_0': 'wi_0', 'wi_1': 'wi_1',
            'wo': 'wo'}
_SAFETENSORS_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
                       'BF16': jnp.bfloat16}


def t5x_path(name: str) -> Optional[Tuple[str, bool]]:
  """(T5X parameter path, transposed) of an HF T5 weight name; None for tied copies.

  'encoder.block.0.layer.1.DenseReluDense.wo.weight' -> ('encoder/layers_0/mlp/wo/kernel', True)
  """
  if name in _TOP_LEVEL:
    return _TOP_LEVEL[name]
  if name in _TIED_COPIES:
    return None
  match = _BLOCK.fullmatch(name)
  if match:
    stack, block, sublayer, module, leaf = match.groups()
    if leaf == 'relative_attention_bias':
      # One table per stack, in block 0; [buckets, heads] in HF, [heads, buckets] in T5X.
      # Old conversions also left an unused one in the cross-attention.
      return (f'{stack}/relpos_bias/rel_embedding', True) if module == 'SelfAttention' else None
    target = _SUBLAYERS.get((stack, int(sublayer), module))
    if target and leaf is None:
      return f'{stack}/layers_{block}/{target}/scale', False
    if target and leaf in _KERNELS:
      return f'{stack}/layers_{block}/{target}/{_KERNELS[leaf]}/kernel', True
  raise CheckpointError(f'Unexpected weight {name} in the Hugging Face checkpoint: not part of a '
                        'T5 1.1 model.')


def t5_config_from_hf(hf_config: Mapping[str, Any], source: str = CONFIG_FILE,
                      **overrides: Any) -> t5.T5Config:
  """The T5Config of an HF T5 1.1 `config.json` (gated-GELU MLP, unscaled untied output layer).

  Fields HF does not record (dropout for training, dtypes, remat, scan)
  come from `overrides` or the T5Config defaults.
  """
  if hf_config.get('model_type', 't5') not in ('t5', 'mt5'):
    raise CheckpointError(f'{source}: model_type {hf_config.get("model_type")!r} is not T5 1.1; '
                          'expected t5 or mt5.')
  proj = hf_config.get('feed_forward_proj', 'relu')
  if proj not in ('gated-gelu', 'gated-gelu_new'):
    raise CheckpointError(f'{source}: feed_forward_proj is {proj!r}, expected gated-gelu: this is '
                          'not a T5 1.1 model (T5 1.0 uses a ReLU MLP).')
  # transformers >= 5 always writes tie_word_embeddings=true and records T5 1.0's
  # output scaling in `scale_decoder_outputs`; older configs say tie_word_embeddings.
  scaled = hf_config.get('scale_decoder_outputs', hf_config.get('tie_word_embeddings', True))
  if scaled:
    raise CheckpointError(f'{source}: tied embeddings with scaled decoder outputs are T5 1.0, '
                          'expected T5 1.1 (tie_word_embeddings: false).')
  return t5.T5Config(
      vocab_size=hf_config['vocab_size'],
      emb_dim=hf_config['d_model'],
      num_heads=hf_config['num_heads'],
      head_dim=hf_config['d_kv'],
      mlp_dim=hf_config['d_ff'],
      num_encoder_layers=hf_config['num_layers'],
      num_decoder_layers=hf_config.get('num_decoder_layers') or hf_config['num_layers'],
      relative_attention_num_buckets=hf_config.get('relative_attention_num_buckets', 32),
      relative_attention_max_distance=hf_config.get('relative_attention_max_distance', 128),
      layer_norm_epsilon=hf_config.get('layer_norm_epsilon', 1e-6),
      **overrides)


class SafetensorsArray:
  """One tensor of an open safetensors file, read slice by slice (memory-mapped)."""

  def __init__(self, file: str, handle: Any, name: str):
    self.file, self.name = file, name
    kind = handle.get_slice(name).get_dtype()
    if kind not in _SAFETENSORS_DTYPES:
      raise CheckpointError(f'{file}: tensor {name} has dtype {kind}, expected a float type.')
    self.dtype = jnp.dtype(_SAFETENSORS_DTYPES[kind])
    self.shape = tuple(handle.get_slice(name).get_shape())
    # numpy has no bfloat16 of its own; safetensors' flax reader does.
    self._handle = handle if kind != 'BF16' else None

  def __getitem__(self, index: arrays.Index) -> np.ndarray:
    if self._handle is None:
      from safetensors import safe_open  # pylint: disable=g-import-not-at-top
      self._handle = safe_open(self.file, framework='flax')
    return np.asarray(self._handle.get_slice(self.name)[index])


def _safetensors_arrays(file: str) -> Dict[str, SafetensorsArray]:
  """All tensors of a safetensors file, as lazy arrays over one memory-mapped handle."""
  from safetensors import SafetensorError, safe_open  # pylint: disable=g-import-not-at-top
  try:
    handle = safe_open(file, framework='numpy')
    return {name: SafetensorsArray(file, handle, name) for name in handle.keys()}
  except SafetensorError as e:
    raise CheckpointError(f'Cannot read {file}: {one_line(e)}') from None


def _torch_arrays(file: str) -> Dict[str, np.ndarray]:
  """All tensors of a `pytorch_model.bin`, loaded without running pickled code."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(f'Reading {file} needs torch (pip install torch); or convert the model '
                          'to model.safetensors.') from None
  try:
    state = torch.load(file, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises several types for bad files
    raise CheckpointError(f'Cannot read {file}: {one_line(e)}') from None
  # numpy has no bfloat16 of its own; widen (exact) rather than fail.
  return {name: (t.float() if t.dtype == torch.bfloat16 else t).numpy()
          for name, t in state.items()}


def _files(directory: str, name: str) -> List[str]:
  """The file `name` in `directory`, or the shards its `.index.json` lists; [] when neither."""
  index = os.path.join(directory, name + '.index.json')
  if storage.exists(index):
    shards = json.loads(storage.read_text(index))['weight_map'].values()
    return sorted({os.path.join(directory, shard) for shard in shards})
  single = os.path.join(directory, name)
  return [single] if storage.exists(single) else []


def _weights(directory: str) -> Dict[str, arrays.LazyArray]:
  """HF weight name -> array, from safetensors (lazy, preferred) or torch files, maybe sharded."""
  for name, read in ((SAFETENSORS_FILE, _safetensors_arrays), (TORCH_FILE, _torch_arrays)):
    files = _files(directory, name)
    if files:
      weights = {}
      for file in files:
        weights.update(read(file))
      return weights
  raise CheckpointError(f'No {SAFETENSORS_FILE} or {TORCH_FILE} in {directory}.')


def resolve(path_or_id: str) -> str:
  """A local model directory: `path_or_id` itself, or the hub snapshot of a model id.

  The hub is asked for the model's revision within PROMPT_TUNING_REMOTE_TIMEOUT
  seconds. Without an answer (no network, a timeout, HF_HUB_OFFLINE), a copy
  in the local Hugging Face cache is used if there is one; else an
  UnreachableError says what could not be reached and how to point at a
  local copy. An answer of "no such model" keeps its own message.
  """
  if storage.is_dir(path_or_id):
    return path_or_id
  try:
    # pylint: disable=g-import-not-at-top
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
  except ImportError:
    raise CheckpointError(f'{path_or_id} is not a directory, and downloading it from the Hugging '
                          'Face Hub needs huggingface_hub (pip install ".[hf]").') from None
  failed = (f'{path_or_id} is not a local directory, and downloading it from the Hugging Face '
            'Hub failed')
  timeout = storage.remote_timeout()
  started = time.monotonic()
  hub_error = None
  try:
    revision = HfApi().model_info(path_or_id, timeout=timeout).sha
  except HFValidationError as e:  # not a hub id at all
    raise CheckpointError(f'{failed}: {one_line(e)}') from None
  except Exception as e:  # an HTTP error (unknown or private model, hub down), or no answer
    revision, hub_error = None, e
  elapsed = time.monotonic() - started
  try:
    directory = _snapshot(path_or_id, revision)  # from the cache alone after a hub error
  except Exception as e:  # hub errors: gated model, lost network; a cache without the model
    if hub_error is None or isinstance(hub_error, HfHubHTTPError):  # the hub answered
      raise CheckpointError(f'{failed}: {one_line(hub_error or e)}') from None
    raise _hub_unreachable(path_or_id, hub_error, elapsed, timeout, constants.ENDPOINT) from None
  if hub_error is not None:
    logging.warning('The Hugging Face Hub could not give %s (%s); using the cached copy in %s.',
                    path_or_id, one_line(hub_error), directory)
  return directory


def _snapshot(repo_id: str, revision: Optional[str]) -> str:
  """The local directory of the model's config and weights; from the cache only without `revision`.

  Safetensors are preferred; `pytorch_model.bin` is fetched only when the
  model has no safetensors.
  """
  from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top
  offline = revision is None
  directory = snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                allow_patterns=[CONFIG_FILE, SAFETENSORS_FILE + '*'])
  if not any(f.startswith(SAFETENSORS_FILE) for f in storage.list_dir(directory)):
    directory = snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                  allow_patterns=[CONFIG_FILE, TORCH_FILE + '*'])
  return directory


def _hub_unreachable(repo_id: str, error: BaseException, elapsed: float, timeout: float,
                     endpoint: str) -> 'storage.UnreachableError':
  """The one-line error of a hub model that neither the hub nor the local cache could give."""
  local = ('point INITIAL_CHECKPOINT_PATH at a local model directory (config.json and '
           'model.safetensors), e.g. --gin.INITIAL_CHECKPOINT_PATH="\'/path/to/model_dir\'"')
  if type(error).__name__ == 'OfflineModeIsEnabled':
    return storage.UnreachableError(
        f'{repo_id} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: download '
        f'it once where there is network (hf download {repo_id}), or {local}.')
  if 'Timeout' in type(error).__name__:
    why = f'no answer within {timeout:g} s (set {storage.TIMEOUT_ENV} to wait longer)'
  else:
    why = f'gave up after {elapsed:.1f} s ({type(error).__name__}: {one_line(error)})'
  return storage.UnreachableError(
      f'Cannot reach the Hugging Face Hub at {endpoint} for {repo_id}: {why}, and it is not in the '
      f'local Hugging Face cache. Without network, {local}; or download it once where there is '
      f'network (hf download {repo_id}) and set HF_HUB_OFFLINE=1.')


class HFCheckpoint(arrays.ArrayCheckpoint):
  """A Hugging Face T5 1.1 checkpoint (local directory or hub id) as lazy T5X-named arrays."""

  def __init__(self, path_or_id: str):
    self.directory = resolve(path_or_id)
    config_file = os.path.join(self.directory, CONFIG_FILE)
    text = storage.read_text(config_file)
    try:
      self.hf_config = json.loads(text)
    except ValueError as e:
      raise CheckpointError(f'Cannot read {config_file}: {one_line(e)}') from None
    weights = _weights(self.directory)
    mapped = {}
    for name, array in weights.items():
      target = t5x_path(name)
      if target is not None:
        path, transposed = target
        mapped[path] = arrays.Transposed(array) if transposed else array
    # transformers >= 5 saves an untied-but-unscaled head as tied: no lm_head.weight.
    if 'decoder/logits_dense/kernel' not in mapped and 'shared.weight' in weights:
      mapped['decoder/logits_dense/kernel'] = arrays.Transposed(weights['shared.weight'])
    super().__init__(mapped, f'Hugging Face checkpoint {path_or_id}')

  def t5_config(self, **overrides: Any) -> t5.T5Config:
    """The T5Config described by the checkpoint's config.json."""
    return t5_config_from_hf(self.hf_config, os.path.join(self.directory, CONFIG_FILE), **overrides)
