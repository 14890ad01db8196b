"""Hugging Face T5 1.1 checkpoints: our model matches HF's logits, greedy decoding and PEFT."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import checkpoints, decoding
from prompt_tuning.models import prompted, t5

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

SIZES = {  # HF T5Config fields of T5 1.1 models of two sizes
    'tiny': dict(vocab_size=64, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_decoder_layers=2,
                 num_heads=2, relative_attention_num_buckets=8,
                 relative_attention_max_distance=16),
    # Several heads and layers, an encoder deeper than the decoder, and T5's real
    # bucketing (32 buckets up to distance 128), reached by inputs longer than 128.
    'several_heads': dict(vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=3,
                          num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=32,
                          relative_attention_max_distance=128),
}
INPUT_LENGTHS = {'tiny': (11, 6, 2), 'several_heads': (150, 37, 5)}
TARGET_LENGTHS = (9, 4, 1)
DECODE_LENGTH = 10


def batch(size: str, seed: int = 0):
  """[B, T] inputs and [B, T'] targets of different lengths, each ending in EOS (1), 0-padded."""
  rng = np.random.default_rng(seed)
  vocab = SIZES[size]['vocab_size']

  def padded(lengths):
    rows = np.zeros((len(lengths), max(lengths)), np.int32)
    for row, length in zip(rows, lengths):
      row[:length] = np.append(rng.integers(2, vocab, length - 1), 1)
    return rows

  return padded(INPUT_LENGTHS[size]), padded(TARGET_LENGTHS)


def hf_t5_1_1(size: str, untied_head: bool = True):
  """A randomly initialised HF T5 1.1 (gated-GELU, no output scaling) in float32."""
  torch.manual_seed(0)
  config = transformers.T5Config(**SIZES[size], feed_forward_proj='gated-gelu',
                                 tie_word_embeddings=False, dropout_rate=0.0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  if untied_head:
    # Real T5 1.1 checkpoints have their own output layer; transformers >= 5 ties it
    # to `shared` unless the checkpoint holds one.
    vocab, width = model.lm_head.weight.shape
    model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, width) * width**-0.5)
  return model


def save_torch_bin(model, directory):
  """The legacy `pytorch_model.bin` layout (transformers >= 5 only writes safetensors)."""
  directory.mkdir()
  model.config.to_json_file(directory / 'config.json')
  torch.save(model.state_dict(), directory / 'pytorch_model.bin')


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """{size: (HF model, {format: directory})}: each model saved as safetensors and as torch .bin."""
  models = {}
  for size in SIZES:
    model = hf_t5_1_1(size)
    root = tmp_path_factory.mktemp(size)
    model.save_pretrained(root / 'safetensors')
    save_torch_bin(model, root / 'bin')
    models[size] = (model, {'safetensors': root / 'safetensors', 'bin': root / 'bin'})
  return models


def hf_logits(model, inputs, targets):
  """HF teacher-forced logits [B, T', V], masks from the padding, as float64 numpy."""
  decoder_inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  with torch.no_grad():
    out = model(input_ids=torch.tensor(inputs, dtype=torch.long),
                attention_mask=torch.tensor(inputs > 0, dtype=torch.long),
                decoder_input_ids=torch.tensor(decoder_inputs, dtype=torch.long),
                decoder_attention_mask=torch.tensor(targets > 0, dtype=torch.long))
  return out.logits.double().numpy()


def our_logits(config, params, inputs, targets):
  decoder_inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  return np.asarray(t5.Transformer(config).apply({'params': params}, inputs, decoder_inputs,
                                                 targets, enable_dropout=False), np.float64)


def max_logit_difference(ours, theirs, targets):
  """max |Δlogit| over the non-padded target positions."""
  return float(np.abs(ours - theirs)[targets > 0].max())


@pytest.mark.parametrize('file_format', ['safetensors', 'bin'])
@pytest.mark.parametrize('size', sorted(SIZES))
def test_converted_weights_give_hf_logits(saved, size, file_format):
  model, directories = saved[size]
  params = checkpoints.load_t5(str(directories[file_format]))
  config = checkpoints.HFCheckpoint(str(directories[file_format])).t5_config()
  inputs, targets = batch(size)
  difference = max_logit_difference(our_logits(config, params, inputs, targets),
                                    hf_logits(model, inputs, targets), targets)
  print(f'\nmax |Δlogit| vs HF, {size} ({file_format}): {difference:.2e}')
  assert difference < 1e-4


def test_sharded_safetensors_give_the_same_params(saved, tmp_path):
  model, directories = saved['tiny']
  model.save_pretrained(tmp_path, max_shard_size='2KB')
  assert len(list(tmp_path.glob('*.safetensors'))) > 1
  sharded = checkpoints.load_t5(str(tmp_path))
  whole = checkpoints.load_t5(str(directories['safetensors']))
  jax.tree.map(np.testing.assert_array_equal, sharded, whole)


def test_config_is_read_from_hf_config_json(saved):
  directory = saved['several_heads'][1]['safetensors']
  config = checkpoints.HFCheckpoint(str(directory)).t5_config(dropout_rate=0.1)
  assert config == t5.T5Config(vocab_size=128, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=48,
                               num_encoder_layers=3, num_decoder_layers=2,
                               relative_attention_num_buckets=32,
                               relative_attention_max_distance=128, dropout_rate=0.1)


def test_checkpoint_without_an_output_layer_uses_the_shared_embedding(tmp_path):
  # transformers >= 5 saves an unscaled T5 whose head is tied as `shared.weight` alone.
  model = hf_t5_1_1('tiny', untied_head=False)
  model.save_pretrained(tmp_path)
  assert 'lm_head.weight' not in checkpoints.HFCheckpoint(str(tmp_path)).arrays
  params = checkpoints.load_t5(str(tmp_path))
  np.testing.assert_array_equal(params['decoder']['logits_dense']['kernel'],
                                params['token_embedder']['embedding'].T)
  inputs, targets = batch('tiny')
  config = checkpoints.HFCheckpoint(str(tmp_path)).t5_config()
  assert max_logit_difference(our_logits(config, params, inputs, targets),
                              hf_logits(model, inputs, targets), targets) < 1e-4


@pytest.mark.parametrize('size', sorted(SIZES))
def test_greedy_decoding_gives_the_tokens_of_hf_generate(saved, size):
  model, directories = saved[size]
  params = checkpoints.load_t5(str(directories['safetensors']))
  config = checkpoints.HFCheckpoint(str(directories['safetensors'])).t5_config()
  inputs, _ = batch(size)
  greedy = lambda eos_id: np.asarray(decoding.greedy_decode(
      t5.Transformer(config), params, inputs, DECODE_LENGTH, eos_id=eos_id)[0])
  # Random weights rarely emit token 1: end on the third token of the first row
  # instead, so that stopping and the padding after EOS are compared too.
  eos_id = int(greedy(eos_id=-1)[0, 2])
  ours = greedy(eos_id)
  assert (ours[0, 3:] == 0).all()
  with torch.no_grad():
    theirs = model.generate(input_ids=torch.tensor(inputs, dtype=torch.long),
                            attention_mask=torch.tensor(inputs > 0, dtype=torch.long),
                            max_new_tokens=DECODE_LENGTH, num_beams=1, do_sample=False,
                            decoder_start_token_id=0, eos_token_id=eos_id, pad_token_id=0).numpy()
  theirs = np.pad(theirs[:, 1:], ((0, 0), (0, DECODE_LENGTH + 1 - theirs.shape[1])))
  np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('field, value, complaint', [
    ('feed_forward_proj', 'relu', 'gated-gelu'),
    ('tie_word_embeddings', True, 'T5 1.0'),
    ('model_type', 'bart', 'model_type'),
])
def test_configs_that_are_not_t5_1_1_are_refused(field, value, complaint):
  config = {'model_type': 't5', 'vocab_size': 8, 'd_model': 4, 'num_heads': 1, 'd_kv': 4,
            'd_ff': 8, 'num_layers': 1, 'feed_forward_proj': 'gated-gelu',
            'tie_word_embeddings': False, field: value}
  with pytest.raises(checkpoints.CheckpointError, match=complaint):
    checkpoints.t5_config_from_hf(config)


def test_hf_checkpoint_of_the_wrong_size_names_an_array_and_both_shapes(saved):
  directory = saved['tiny'][1]['safetensors']
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'array \S+ has shape \(.*\), expected \(.*\)') as error:
    checkpoints.load_t5(str(directory), 'small')
  assert '\n' not in str(error.value)


# PEFT: a prompt written here loads in PEFT with the same logits, and the reverse.

PROMPT_LENGTH = 5


def prompted_logits(config, params, prompt, inputs, targets):
  """Our prompted model's teacher-forced logits with `prompt` [P, H] before the inputs."""
  model = prompted.PromptedT5(config, prompted.PromptConfig(length=prompt.shape[0]))
  prompt_params = {'prompt': {'prompt': jnp.asarray(prompt)}}
  params = {**params, 'encoder': {**params['encoder'], 'prompt': prompt_params}}
  decoder_inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  return np.asarray(model.apply({'params': params}, inputs, decoder_inputs, targets,
                                enable_dropout=False), np.float64)


@pytest.fixture(scope='module')
def tiny_hf(saved):
  """The tiny model's directory, our params and config for it."""
  directory = saved['tiny'][1]['safetensors']
  return (directory, checkpoints.load_t5(str(directory)),
          checkpoints.HFCheckpoint(str(directory)).t5_config())


def test_prompt_written_here_loads_in_peft_with_our_logits(tiny_hf, tmp_path):
  peft = pytest.importorskip('peft')
  directory, params, config = tiny_hf
  prompt = np.random.default_rng(1).uniform(-0.5, 0.5, (PROMPT_LENGTH, config.emb_dim))
  checkpoints.write_peft_adapter(str(tmp_path), prompt)
  np.testing.assert_array_equal(checkpoints.read_peft_adapter(str(tmp_path)),
                                prompt.astype(np.float32))
  base = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
  adapted = peft.PeftModel.from_pretrained(base, str(tmp_path)).eval()
  inputs, targets = batch('tiny')
  theirs = hf_logits(adapted, inputs, targets)
  # PEFT prepends the prompt to the embedded inputs, as feeding it by hand does.
  with torch.no_grad():
    embedded = base.shared(torch.tensor(inputs, dtype=torch.long))
    by_hand = base(
        inputs_embeds=torch.cat([torch.tensor(prompt, dtype=torch.float32)[None].expand(
            len(inputs), -1, -1), embedded], dim=1),
        attention_mask=torch.tensor(np.pad(inputs > 0, ((0, 0), (PROMPT_LENGTH, 0)),
                                           constant_values=True), dtype=torch.long),
        decoder_input_ids=torch.tensor(np.pad(targets[:, :-1], ((0, 0), (1, 0))),
                                       dtype=torch.long)).logits.double().numpy()
  assert max_logit_difference(by_hand, theirs, targets) < 1e-5
  ours = prompted_logits(config, params, prompt.astype(np.float32), inputs, targets)
  assert max_logit_difference(ours, theirs, targets) < 1e-4


@pytest.mark.parametrize('submodules', [1, 2])
def test_prompt_saved_by_peft_loads_here_with_peft_logits(tiny_hf, tmp_path, submodules):
  peft = pytest.importorskip('peft')
  directory, params, config = tiny_hf
  torch.manual_seed(submodules)
  base = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
  adapted = peft.get_peft_model(base, peft.PromptTuningConfig(
      task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=PROMPT_LENGTH,
      token_dim=config.emb_dim, num_transformer_submodules=submodules)).eval()
  adapted.save_pretrained(tmp_path)
  assert json.loads((tmp_path / 'adapter_config.json').read_text())['peft_type'] == 'PROMPT_TUNING'
  prompt = checkpoints.read_peft_adapter(str(tmp_path), expected_shape=(PROMPT_LENGTH,
                                                                        config.emb_dim))
  inputs, targets = batch('tiny')
  assert max_logit_difference(prompted_logits(config, params, prompt, inputs, targets),
                              hf_logits(adapted, inputs, targets), targets) < 1e-4


def test_peft_prompt_of_the_wrong_shape_states_both_shapes(tmp_path):
  checkpoints.write_peft_adapter(str(tmp_path), np.zeros((3, 8), np.float32))
  with pytest.raises(checkpoints.CheckpointError, match=r'\(3, 8\), expected \(3, 16\)'):
    checkpoints.read_peft_adapter(str(tmp_path), expected_shape=(3, 16))
